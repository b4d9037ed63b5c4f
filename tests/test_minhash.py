import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32

from datagen.errors import DatagenError
from datagen.filters.minhash import MinHashDedup, MinHasher, representatives, shingles
from datagen.records import Record

REPO = Path(__file__).resolve().parents[1]
WORDS = [f"w{i}" for i in range(3000)]


def sentence(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def near_copy(rng: random.Random, words: list[str], edits: int) -> list[str]:
    out = list(words)
    for _ in range(edits):
        out[rng.randrange(len(out))] = rng.choice(WORDS)
    return out


def true_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb)


def sample_with_clusters(seed: int = 7, n: int = 500) -> list[tuple[str, str]]:
    """Originals plus copies at 0-6 random word edits: pairs from ~1.0 down to well below 0.8."""
    rng = random.Random(seed)
    originals, items = [], []
    for i in range(n):
        if originals and rng.random() < 0.4:
            words = near_copy(rng, rng.choice(originals), rng.randrange(7))
        else:
            words = sentence(rng, rng.randrange(20, 61))
            originals.append(words)
        items.append((f"r{i}", " ".join(words)))
    return items


def plain_datasketch_decisions(items, threshold=0.8, num_perm=128, weights=(0.1, 0.9)):
    """The anchor: MinHash per record with per-shingle update, MinHashLSH query, jaccard check, insert."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    kept, order, out, below = {}, {}, [], 0
    for rid, text in items:
        m = MinHash(num_perm=num_perm, seed=1, scheme="affine32", hashfunc=sha1_hash32)
        for s in shingles(text):
            m.update(s.encode("utf-8"))
        best, best_j = None, -1.0
        for key in sorted(lsh.query(m), key=order.__getitem__):
            if m.jaccard(kept[key]) > best_j:
                best, best_j = key, m.jaccard(kept[key])
        if best is not None and best_j >= threshold:
            out.append((False, best, best_j))
        else:
            below += best is not None
            lsh.insert(rid, m)
            kept[rid], order[rid] = m, len(order)
            out.append((True, None, None))
    return out, below


def decisions(verdicts):
    return [(True, None, None) if v.keep else (False, v.detail["duplicate_of"], v.detail["jaccard_estimate"]) for v in verdicts]


@pytest.mark.parametrize("unit,num_perm,seed", [("word", 128, 1), ("char", 64, 7)])
def test_vectorised_signatures_equal_datasketch_hashvalues(unit, num_perm, seed):
    hasher = MinHasher(num_perm=num_perm, seed=seed, unit=unit)
    texts = [
        "Explain why the sky is blue, in two sentences.",
        "Ｆｕｌｌ－ｗｉｄｔｈ text, Straße and naïve café — résumé.",
        "ok",
        "",
        " ".join(sentence(random.Random(1), 60)),
        "repeat repeat repeat repeat repeat repeat",
    ]
    ours = hasher.signatures(texts)
    for text, row in zip(texts, ours):
        ref = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=sha1_hash32)
        for s in shingles(text, unit):
            ref.update(s.encode("utf-8"))
        assert ref.hashvalues.dtype == row.dtype == np.uint32
        assert np.array_equal(ref.hashvalues, row), text
        batch = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")  # datasketch's default hashfunc
        batch.update_batch([s.encode("utf-8") for s in shingles(text, unit)])
        assert np.array_equal(batch.hashvalues, row)


def test_first_seen_is_kept():
    dedup = MinHashDedup()
    assert dedup.check_and_add("a", "Write a short poem about the sea at night and the stars above it.").keep
    assert dedup.check_and_add("b", "List five vegetables that grow well in cold climates and say why.").keep


def test_later_near_duplicate_is_dropped_pointing_at_the_kept_one():
    dedup = MinHashDedup()
    original = "Write a short poem about the sea at night, the stars above it and the boats in the harbour."
    dedup.check_and_add("a", original)
    verdict = dedup.check_and_add("b", "write a short poem about the sea at night the stars above it and the boats in the harbour please")
    assert not verdict.keep
    assert verdict.reason == "minhash_duplicate"
    assert verdict.detail["duplicate_of"] == "a"
    assert 0.8 <= verdict.detail["jaccard_estimate"] <= 1.0
    assert dedup.counts == {"seen": 2, "kept": 1, "dropped": 1, "empty": 0}


def test_duplicates_are_not_indexed_so_chains_point_at_the_cluster_head():
    rng = random.Random(3)
    base = sentence(rng, 50)
    dedup = MinHashDedup()
    dedup.check_and_add("head", " ".join(base))
    for i in range(5):
        v = dedup.check_and_add(f"copy{i}", " ".join(base[:-1] + [f"x{i}"]))
        assert v.detail["duplicate_of"] == "head"


def test_jaccard_estimate_is_close_to_the_true_shingle_jaccard():
    rng = random.Random(11)
    for edits in (0, 1, 2, 3):
        words = sentence(rng, 60)
        a, b = " ".join(words), " ".join(near_copy(rng, words, edits))
        dedup = MinHashDedup(threshold=0.01 if edits else 0.8)
        dedup.check_and_add("a", a)
        v = dedup.check_and_add("b", b)
        assert not v.keep
        assert abs(v.detail["jaccard_estimate"] - true_jaccard(a, b)) < 0.12  # ~3 sigma at 128 permutations


def test_decisions_equal_plain_datasketch_minhashlsh_on_a_sample():
    items = sample_with_clusters()
    ours = decisions(MinHashDedup().check_and_add_many(items))
    reference, candidates_below_threshold = plain_datasketch_decisions(items)
    assert ours == reference
    # the sample exercises every path: drops, band collisions verified away, and plain keeps
    assert sum(not keep for keep, _, _ in ours) > 40
    assert candidates_below_threshold > 5


def test_batched_and_one_by_one_give_the_same_verdicts():
    items = sample_with_clusters(seed=5, n=700)  # more than one internal batch
    one = MinHashDedup()
    assert list(MinHashDedup().check_and_add_many(items)) == [one.check_and_add(i, t) for i, t in items]


def test_same_input_gives_same_decisions_in_separate_processes():
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
        "from test_minhash import sample_with_clusters, decisions;"
        "from datagen.filters.minhash import MinHashDedup;"
        "print(json.dumps(decisions(MinHashDedup().check_and_add_many(sample_with_clusters(seed=9)))))"
    )
    runs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", script, str(REPO), str(REPO / "tests")],
                             env=env, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out))
    assert runs[0] == runs[1]
    assert any(not keep for keep, _, _ in runs[0])


def test_empty_text_is_kept_and_never_a_duplicate_target():
    dedup = MinHashDedup()
    assert dedup.check_and_add("e1", "").keep
    assert dedup.check_and_add("e2", " ... ").keep
    assert dedup.counts["empty"] == 2


def test_char_shingles_catch_a_misspelt_copy_that_word_shingles_miss():
    a = "Summarise the following paragraph in one short sentence for a ten year old reader who likes science."
    b = "Summarise the folowing paragraph in one short sentance for a ten year old reader who likes science."
    by_char, by_word = MinHashDedup(shingle="char"), MinHashDedup(shingle="word")
    for dedup in (by_char, by_word):
        dedup.check_and_add("a", a)
    assert by_char.check_and_add("b", b).detail["duplicate_of"] == "a"
    assert by_word.check_and_add("b", b).keep


def _cluster_records():
    rng = random.Random(21)
    a, b = sentence(rng, 40), sentence(rng, 40)
    return [
        Record(instruction=" ".join(a), output="first", scores={"judge": 6}),
        Record(instruction=" ".join(b), output="other", scores={}),
        Record(instruction=" ".join(a[:-1] + ["zz"]), output="first", scores={"judge": {"score": 9, "rationale": "clear"}}),
        Record(instruction=" ".join(["zz"] + a), output="first", scores={"judge": 9}),
        Record(instruction=" ".join(b + ["yy"]), output="other", scores={}),
    ]


def test_representatives_first_seen_keeps_one_per_cluster():
    recs = _cluster_records()
    out = representatives(recs, score_key=None)
    assert [r.id for r in out.kept] == [recs[0].id, recs[1].id]
    assert [(r.id, v.detail["duplicate_of"]) for r, v in out.dropped] == [
        (recs[2].id, recs[0].id), (recs[3].id, recs[0].id), (recs[4].id, recs[1].id)]


def test_representatives_keeps_the_best_judged_ties_to_first_seen():
    recs = _cluster_records()
    out = representatives(recs, score_key="judge")
    # records 2 and 3 tie at 9: the earlier (2) wins; the unscored cluster falls back to first seen
    assert [r.id for r in out.kept] == [recs[1].id, recs[2].id]
    assert {r.id: v.detail["duplicate_of"] for r, v in out.dropped} == {
        recs[0].id: recs[2].id, recs[3].id: recs[2].id, recs[4].id: recs[1].id}
    assert all(v.reason == "minhash_duplicate" for _, v in out.dropped)


def test_config_names_the_scheme_for_the_manifest():
    cfg = MinHashDedup(num_perm=64, shingle="char", shingle_size=4).config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["scheme"] == "affine32"
    assert cfg["hashfunc"] == "datasketch.hashfunc.sha1_hash32"
    assert cfg["datasketch"] == "2.0.0"
    assert cfg["shingles"] == {"unit": "char", "size": 4}
    assert (cfg["threshold"], cfg["num_perm"], cfg["seed"]) == (0.8, 64, 1)
    assert cfg["bands"] * cfg["rows_per_band"] <= 64


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"num_perm": 1}, {"shingle": "line"}, {"fields": ["body"]},
                                    {"lsh_weights": (0.7, 0.7)}])
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(DatagenError):
        MinHashDedup(**kwargs)
