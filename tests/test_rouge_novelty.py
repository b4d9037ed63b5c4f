"""RougeNovelty must make exactly rouge-score 0.1.2's decisions (Self-Instruct's > 0.7 rule), only faster."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer, tokenizers

from datagen.errors import DatagenError
from datagen.filters import rouge_novelty
from datagen.filters.rouge_novelty import MEAN_SAMPLE, RougeNovelty, rouge_l_f, tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
VOCAB = "the a of to write list explain given text sentence story data find best new 2 10".split()


def rouge_score_f(new: str, old: str) -> float:
    """Self-Instruct's call: scorer.score(new_instruction, pooled_instruction)."""
    return SCORER.score(new, old)["rougeL"].fmeasure


def naive_stream(texts: list[str], seeds: list[str] = (), threshold: float = 0.7) -> list[dict]:
    """Self-Instruct's loop, verbatim in spirit: every pair through rouge-score."""
    pool = list(seeds)
    out = []
    for text in texts:
        scores = [rouge_score_f(text, old) for old in pool]
        rouge_max = max(scores, default=0.0)
        kept = not rouge_max > threshold
        top = sorted(scores, reverse=True)[:10]
        out.append({"keep": kept, "rouge_max": rouge_max, "top": [s for s in top if s > 0],
                    "avg": float(np.mean(scores)) if scores else 0.0})
        if kept:
            pool.append(text)
    return out


def edit(rng: random.Random, words: list[str], n_edits: int) -> list[str]:
    words = list(words)
    for _ in range(n_edits):
        op, i = rng.random(), rng.randrange(len(words))
        if op < 0.3:
            words[i] = rng.choice(VOCAB)
        elif op < 0.55 and len(words) > 1:
            del words[i]
        elif op < 0.85:
            words.insert(i, rng.choice(VOCAB))
        elif i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return words


def near_duplicate_stream(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.5:
            words = edit(rng, texts[rng.randrange(len(texts))].split(), rng.choice([0, 1, 2, 3, 4, 6]))
        else:
            words = [rng.choice(VOCAB) for _ in range(rng.randint(3, 16))]
        text = " ".join(words)
        texts.append(text.capitalize() + rng.choice([".", "?", "", "!"]))
    return texts


def test_tokenizer_is_rouge_scores_own():
    rng = random.Random(1)
    alphabet = list("abcXYZ019 _-'.,!?\t\n") + ["é", "İ", "\u212a", "ß", "日本", "Ω", "ｆ", "ǅ", "\u00a0"]
    rouge_tok = tokenizers.DefaultTokenizer(use_stemmer=False)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert tokenize(text) == rouge_tok.tokenize(text), text


def test_random_pairs_score_exactly_like_rouge_score():
    rng = random.Random(7)
    near = 0
    for _ in range(3000):
        a = [rng.choice(VOCAB) for _ in range(rng.randint(0, 20))]
        if a and rng.random() < 0.7:
            b = edit(rng, a, rng.randint(0, 8))
        else:
            b = [rng.choice(VOCAB) for _ in range(rng.randint(0, 20))]
        new, old = " ".join(a), " ".join(b)
        expected = rouge_score_f(new, old)
        near += abs(expected - 0.7) < 0.05
        assert rouge_l_f(tokenize(new), tokenize(old)) == expected
        index = RougeNovelty()
        index.add(old)
        verdict = index.check(new)
        assert verdict.keep == (not expected > 0.7), (new, old, expected)
        assert verdict.detail["rouge_max"] == expected
    assert near > 200  # the sample really exercises the threshold


def test_boundary_seven_common_tokens_in_twenty_is_decided_by_float_rounding():
    """True F = 2*7/20 = 0.7 exactly; rouge-score's float formula lands on 0.7000000000000001 (> 0.7,
    rejected) for a 9 + 11 split but on 0.7 (kept) for 10 + 10. Both must come out as rouge-score says."""
    common = "alpha beta gamma delta epsilon zeta eta".split()
    old = " ".join(["four"] + common + ["five", "six", "seven"])  # 11 tokens
    new = " ".join(common + ["one", "two"])  # 9 tokens
    assert rouge_score_f(new, old) == 0.7000000000000001
    index = RougeNovelty()
    index.add(old)
    verdict = index.check(new)
    assert not verdict.keep
    assert verdict.reason == "rouge_similar"
    assert verdict.detail == {"rouge_max": 0.7000000000000001, "most_similar": old}

    new_10 = " ".join(common + ["one", "two", "three"])
    old_10 = " ".join(["four"] + common + ["five", "six"])
    assert rouge_score_f(new_10, old_10) == 0.7
    index = RougeNovelty()
    index.add(old_10)
    verdict = index.check(new_10)
    assert verdict.keep and verdict.detail["rouge_max"] == 0.7


@pytest.mark.parametrize("len_new", range(7, 14))
def test_every_split_of_twenty_tokens_with_lcs_seven_decides_like_rouge_score(len_new):
    """True F is exactly 0.7 for all of them; only the float rounding decides, and it must be rouge-score's."""
    common = [f"c{i}" for i in range(7)]
    new = " ".join(common + [f"n{i}" for i in range(len_new - 7)])
    old = " ".join(common + [f"o{i}" for i in range(20 - len_new - 7)])
    expected = rouge_score_f(new, old)
    index = RougeNovelty()
    index.add(old)
    assert index.check(new).keep == (not expected > 0.7)


def test_empty_token_lists_score_zero_and_are_kept():
    index = RougeNovelty()
    index.add("!!! ???")
    verdict = index.check_and_add("...")
    assert verdict.keep and verdict.detail["rouge_max"] == 0.0 and verdict.detail["most_similar"] == []
    assert rouge_l_f([], ["a"]) == 0.0 == rouge_score_f("", "a")
    assert len(index) == 2


def test_stream_accepts_exactly_what_the_naive_rouge_score_loop_accepts():
    texts = near_duplicate_stream(300, seed=3)
    seeds = texts[:20]
    expected = naive_stream(texts[20:], seeds=seeds)
    index = RougeNovelty()
    for s in seeds:
        index.add(s)
    got = [index.check_and_add(t) for t in texts[20:]]
    assert [v.keep for v in got] == [e["keep"] for e in expected]
    assert 30 < sum(not v.keep for v in got) < 250
    for v, e in zip(got, expected):
        assert v.detail["rouge_max"] == e["rouge_max"]
        if v.keep:
            assert [s for _, s in v.detail["most_similar"]] == e["top"]
            assert v.detail["avg_similarity"] == pytest.approx(e["avg"], rel=1e-12, abs=1e-15)
            assert v.detail["avg_similarity_n"] == v.detail["pool_size"]  # small pool: exact mean


def test_shuffled_sentences_where_overlap_bounds_are_useless_stay_exact():
    """Same bag of words everywhere: every pooled instruction has bound 1, so all are verified in batches."""
    rng = random.Random(4)
    words = "write a short story about the old man and his dog in ten lines".split()
    texts = [" ".join(rng.sample(words, len(words))) for _ in range(700)]
    index = RougeNovelty()
    pool: list[list[str]] = []
    for text in texts:
        verdict = index.check_and_add(text)
        scores = [rouge_l_f(tokenize(text), old) for old in pool]  # equals rouge-score: tested above
        assert verdict.detail["rouge_max"] == max(scores, default=0.0)
        assert verdict.keep == (not max(scores, default=0.0) > 0.7)
        if verdict.keep:
            assert [s for _, s in verdict.detail["most_similar"]] == sorted(scores, reverse=True)[:10]
            pool.append(tokenize(text))
    assert len(pool) > 400


def test_self_instruct_seed_and_human_eval_instructions_decide_like_rouge_score():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not present at {REFERENCE}")
    read = lambda name: [json.loads(line)["instruction"] for line in (REFERENCE / name).open()]  # noqa: E731
    seeds = read("self_instruct_seed_tasks.jsonl")
    rng = random.Random(5)
    candidates = read("self_instruct_user_oriented_instructions.jsonl")[:120]
    candidates += [" ".join(edit(rng, rng.choice(seeds).split(), rng.randint(0, 6))) for _ in range(60)]
    rng.shuffle(candidates)
    expected = naive_stream(candidates, seeds=seeds)
    index = RougeNovelty()
    for s in seeds:
        index.add(s)
    got = [index.check_and_add(c) for c in candidates]
    assert [(v.keep, v.detail["rouge_max"]) for v in got] == [(e["keep"], e["rouge_max"]) for e in expected]
    assert sum(not v.keep for v in got) > 20


def test_drop_names_the_most_similar_instruction():
    index = RougeNovelty()
    index.add("Write a short story about a dog who learns to fly.")
    index.add("Translate the following sentence into French.")
    verdict = index.check_and_add("Write a short story about a cat who learns to fly.")
    assert not verdict.keep
    assert verdict.reason == "rouge_similar"
    assert verdict.detail["most_similar"] == "Write a short story about a dog who learns to fly."
    assert verdict.detail["rouge_max"] == rouge_score_f(
        "Write a short story about a cat who learns to fly.", "Write a short story about a dog who learns to fly.")
    assert len(index) == 2  # dropped, not pooled


def test_keep_reports_top_k_and_mean_similarity():
    index = RougeNovelty(top_k=2)
    pool = ["Write a poem about the sea.", "Write a story about the mountains.", "List three prime numbers."]
    for p in pool:
        index.add(p)
    new = "Write an essay about the history of the sea."
    verdict = index.check_and_add(new)
    assert verdict.keep and verdict.reason == ""
    scores = [rouge_score_f(new, p) for p in pool]
    assert verdict.detail["rouge_max"] == max(scores)
    assert verdict.detail["most_similar"] == [[pool[0], scores[0]], [pool[1], scores[1]]]
    assert verdict.detail["avg_similarity"] == pytest.approx(sum(scores) / 3)
    assert (verdict.detail["avg_similarity_n"], verdict.detail["pool_size"]) == (3, 3)
    assert len(index) == 4


def test_check_does_not_pool_but_check_and_add_does():
    index = RougeNovelty()
    assert index.check("Name three colors.").keep
    assert len(index) == 0
    assert index.check_and_add("Name three colors.").keep
    assert not index.check("Name three colors!").keep
    assert len(index) == 1


def test_mean_similarity_becomes_a_named_sample_estimate_for_large_pools():
    index = RougeNovelty()
    for i in range(MEAN_SAMPLE + 100):
        index.add(f"item {i} word{i}")
    verdict = index.check("item 5 anything")
    assert verdict.detail["avg_similarity_n"] == MEAN_SAMPLE
    assert verdict.detail["pool_size"] == MEAN_SAMPLE + 100
    assert 0 < verdict.detail["avg_similarity"] < 1


def test_cjk_near_duplicates_are_caught_only_by_the_unicode_tokenizer():
    old = "请写一首关于大海的短诗。"
    new = "请写一首关于大山的短诗。"
    default, uni = RougeNovelty(), RougeNovelty(tokenizer="unicode")
    for index in (default, uni):
        index.add(old)
    assert default.check(new).keep  # rouge-score sees no tokens at all
    assert default.check(new).detail["rouge_max"] == 0.0 == rouge_score_f(new, old)
    verdict = uni.check(new)
    assert not verdict.keep and verdict.detail["most_similar"] == old
    assert uni.check("用三句话解释光合作用。").keep
    assert (default.tokenizer_name, uni.tokenizer_name) == ("rouge_score", "unicode")


def test_unicode_tokenizer():
    assert tokenize("日本語のテキスト", "unicode") == list("日本語のテキスト")
    assert tokenize("हिन्दी भाषा", "unicode") == ["हिन्दी", "भाषा"]  # combining marks stay inside words
    assert tokenize("Straße ＡＢＣ café_au-lait 한국어 문장", "unicode") == [
        "strasse", "abc", "café", "au", "lait", "한국어", "문장"]
    assert tokenize("ภาษาไทย", "unicode") == list("ภาษาไทย")
    rng = random.Random(2)
    for _ in range(500):  # on ASCII it is the default tokenizer
        text = "".join(rng.choice("abcXYZ019 _-'.,!?\t\n") for _ in range(rng.randint(0, 30)))
        assert tokenize(text, "unicode") == tokenize(text)


def test_unknown_tokenizer_is_a_user_error():
    with pytest.raises(DatagenError, match="unknown ROUGE tokenizer 'spacy'"):
        RougeNovelty(tokenizer="spacy")


def test_huge_vocabulary_falls_back_to_integer_sequences(monkeypatch):
    monkeypatch.setattr(rouge_novelty, "_MAX_TEXT_IDS", 10)
    texts = near_duplicate_stream(120, seed=9)
    expected = naive_stream(texts)
    index = RougeNovelty()
    got = [index.check_and_add(t) for t in texts]
    assert not index._ids_as_text
    assert [(v.keep, v.detail["rouge_max"]) for v in got] == [(e["keep"], e["rouge_max"]) for e in expected]
