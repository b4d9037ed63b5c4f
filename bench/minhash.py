"""MinHash near-duplicate removal: our batched dedup vs plain datasketch, in the same run.

Run from the repository root:  python bench/minhash.py [--quick] [--n N]

Synthetic short records (20-60 words) are generated deterministically from counter-based hashes, so any
record can be regenerated from its index and nothing but the current chunk is held in memory. A known
share are planted near-duplicates of an earlier original (true Jaccard of their 3-word shingle sets
>= 0.89): same text with case/spacing/punctuation changes, last word replaced, a word prepended, or the
last word dropped. The baseline is the anchor's way: one datasketch MinHash per record fed with per-shingle
``update``, ``MinHashLSH.query`` then ``MinHash.jaccard`` against the candidates, ``insert`` when kept.
Both apply the same rule, so their decisions on the prefix must be identical.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasketch import MinHash, MinHashLSH  # noqa: E402
from datasketch.hashfunc import sha1_hash32  # noqa: E402

from datagen.filters.minhash import SCHEME, MinHashDedup  # noqa: E402

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_SALT = {name: np.uint64(k * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF) for k, name in enumerate(
    ["dup", "src", "edit", "extra", "len", "word"], start=1)}
_VOCAB = 30_000
_STOP = "the a an of to in and or for with is are be on at by from as that this it".split()
_STOP_SHARE = 30  # percent of words drawn from the stop list, so unrelated records share some shingles
_CHUNK = 10_000


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, fast bijection used as a counter-based random source."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _vocabulary() -> np.ndarray:
    rng = np.random.default_rng(20240607)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(_VOCAB * 2)} - set(_STOP)
    return np.array(sorted(words)[:_VOCAB], dtype=object)


class Corpus:
    """Deterministic stream of (id, text) with planted near-duplicates and their ground truth."""

    def __init__(self, n: int, dup_share: float):
        self.n = n
        self.dup_per_mille = int(round(dup_share * 1000))
        self.vocab = _vocabulary()
        self.stop = np.array(_STOP, dtype=object)
        self.origin_pos = np.zeros(n, dtype=np.int64)  # position of each original, by origin number
        self.originals = 0

    def _words(self, origins: np.ndarray) -> list[list[str]]:
        lengths = 20 + (_mix(origins.astype(np.uint64) ^ _SALT["len"]) % np.uint64(41)).astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        j = np.arange(lengths.sum()) - np.repeat(starts, lengths)
        key = (np.repeat(origins, lengths).astype(np.uint64) << np.uint64(6)) | j.astype(np.uint64)
        w = _mix(key ^ _SALT["word"])
        pick = (w >> np.uint64(8)).astype(np.uint64)
        is_stop = (w % np.uint64(100)) < np.uint64(_STOP_SHARE)
        flat = np.where(is_stop, self.stop[(pick % np.uint64(len(self.stop))).astype(np.int64)],
                        self.vocab[(pick % np.uint64(_VOCAB)).astype(np.int64)]).tolist()
        return [flat[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist())]

    def chunks(self, stop: int | None = None):
        """Yield (ids, texts, planted_origin_pos) per chunk; planted_origin_pos is -1 for originals."""
        stop = self.n if stop is None else stop
        self.originals = 0
        for lo in range(0, stop, _CHUNK):
            pos = np.arange(lo, min(lo + _CHUNK, stop), dtype=np.uint64)
            is_dup = (_mix(pos ^ _SALT["dup"]) % np.uint64(1000)) < np.uint64(self.dup_per_mille)
            is_dup &= pos > 0
            before = self.originals + np.cumsum(~is_dup) - (~is_dup)  # originals strictly before each position
            origin = np.where(is_dup, 0, before).astype(np.int64)
            src = (_mix(pos ^ _SALT["src"]) % np.maximum(before, 1).astype(np.uint64)).astype(np.int64)
            origin[is_dup] = src[is_dup]
            new = ~is_dup
            self.origin_pos[origin[new]] = pos[new].astype(np.int64)
            self.originals += int(new.sum())
            edit = (_mix(pos ^ _SALT["edit"]) % np.uint64(4)).tolist()
            extra = self.vocab[(_mix(pos ^ _SALT["extra"]) % np.uint64(_VOCAB)).astype(np.int64)].tolist()
            texts = []
            for words, dup, e, x in zip(self._words(origin), is_dup.tolist(), edit, extra):
                if dup:
                    if e == 0:  # differs only in case, spacing and punctuation
                        text = " ".join(words)
                        text = text[0].upper() + text[1:].replace(" ", "  ", 1) + " !"
                        texts.append(text)
                        continue
                    if e == 1:
                        words = words[:-1] + [x]
                    elif e == 2:
                        words = [x] + words
                    else:
                        words = words[:-1]
                texts.append(" ".join(words))
            ids = [f"r{p:07d}" for p in pos.tolist()]
            planted = np.where(is_dup, self.origin_pos[origin], -1)
            yield ids, texts, planted


def baseline(pairs, threshold: float, num_perm: int, weights, shingles) -> tuple[list[tuple], int, int]:
    """Plain datasketch: MinHash per record, per-shingle update, MinHashLSH query/insert, jaccard check."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    kept: dict[str, MinHash] = {}
    order: dict[str, int] = {}
    decisions = []
    for record_id, text in pairs:
        m = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME, hashfunc=sha1_hash32)
        grams = shingles(text)
        for g in grams:
            m.update(g.encode("utf-8"))
        if not grams:
            decisions.append((True, None, None))
            continue
        best, best_j = None, -1.0
        for key in sorted(lsh.query(m), key=order.__getitem__):
            j = m.jaccard(kept[key])
            if j > best_j:
                best, best_j = key, j
        if best is not None and best_j >= threshold:
            decisions.append((False, best, best_j))
        else:
            lsh.insert(record_id, m)
            kept[record_id] = m
            order[record_id] = len(order)
            decisions.append((True, None, None))
    return decisions, lsh.b, lsh.r


def as_decision(v):
    return (True, None, None) if v.keep else (False, v.detail["duplicate_of"], v.detail["jaccard_estimate"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000 records, 5,000-record baseline prefix")
    ap.add_argument("--n", type=int, help="records to dedup (default 1,000,000; --quick 50,000)")
    ap.add_argument("--prefix", type=int, help="records also run through the baseline (20,000; --quick 5,000)")
    ap.add_argument("--dup-share", type=float, default=0.2, help="share of planted near-duplicates")
    args = ap.parse_args()
    n = args.n or (50_000 if args.quick else 1_000_000)
    prefix = min(n, args.prefix or (5_000 if args.quick else 20_000))
    corpus = Corpus(n, args.dup_share)
    probe = MinHashDedup()
    cfg = probe.config()

    # 1. baseline and ours on the same prefix, same process
    pre_ids, pre_texts = [], []
    for ids, texts, _ in corpus.chunks(prefix):
        pre_ids += ids
        pre_texts += texts
    t, c = time.perf_counter(), time.process_time()
    base, b, r = baseline(zip(pre_ids, pre_texts), cfg["threshold"], cfg["num_perm"], probe.lsh_weights,
                          probe.hasher.shingles)
    base_s, base_cpu = time.perf_counter() - t, time.process_time() - c
    assert (b, r) == (cfg["bands"], cfg["rows_per_band"]), "banding differs from MinHashLSH's"
    dedup = MinHashDedup()
    t, c = time.perf_counter(), time.process_time()
    ours_pre = [as_decision(v) for v in dedup.check_and_add_many(zip(pre_ids, pre_texts))]
    ours_pre_s, ours_pre_cpu = time.perf_counter() - t, time.process_time() - c
    identical = ours_pre == base
    mismatches = sum(mine != theirs for mine, theirs in zip(ours_pre, base))
    del dedup, pre_ids, pre_texts

    # 2. ours on the full stream; only the dedup calls are timed, not the generator
    dedup = MinHashDedup()
    ours_s = ours_cpu = 0.0
    wall = time.perf_counter()
    planted = planted_found = right_target = false_drops = 0
    for ids, texts, truth in corpus.chunks():
        t, c = time.perf_counter(), time.process_time()
        verdicts = list(dedup.check_and_add_many(zip(ids, texts)))
        ours_s += time.perf_counter() - t
        ours_cpu += time.process_time() - c
        for v, origin in zip(verdicts, truth.tolist()):
            if origin >= 0:
                planted += 1
                if not v.keep:
                    planted_found += 1
                    right_target += v.detail["duplicate_of"] == f"r{origin:07d}"
            elif not v.keep:
                false_drops += 1
    wall = time.perf_counter() - wall
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

    base_rps = prefix / base_s
    pre_rps = prefix / ours_pre_s
    ours_rps = n / ours_s
    rows = [
        ("baseline datasketch (prefix)", prefix, base_s, base_cpu),
        ("ours (same prefix)", prefix, ours_pre_s, ours_pre_cpu),
        (f"ours (all {n:,})", n, ours_s, ours_cpu),
    ]
    print(f"scheme={cfg['scheme']} hashfunc={cfg['hashfunc']} num_perm={cfg['num_perm']} "
          f"bands x rows={cfg['bands']}x{cfg['rows_per_band']} threshold={cfg['threshold']} "
          f"datasketch={cfg['datasketch']}")
    print(f"{'run':<32}{'records':>10}{'wall s':>9}{'records/s':>11}{'cpu s':>9}{'rec/cpu-s':>11}")
    for name, k, s, cpu in rows:
        print(f"{name:<32}{k:>10,}{s:>9.2f}{k / s:>11,.0f}{cpu:>9.2f}{k / cpu:>11,.0f}")
    print(f"speedup on the prefix: {pre_rps / base_rps:.1f}x wall, {base_cpu / ours_pre_cpu:.1f}x cpu; "
          f"prefix decisions identical: {identical} ({mismatches} mismatches)")
    print(f"full run: {ours_s:.1f}s in dedup ({wall:.1f}s with generation), peak RSS {peak_mb:,.0f} MB")
    print(f"planted near-duplicates: {planted:,}; found {planted_found:,} ({planted_found / max(planted, 1):.2%}), "
          f"pointing at their original {right_target:,}; dropped originals {false_drops:,}; "
          f"total dropped {dedup.counts['dropped']:,}")
    print(json.dumps({
        "bench": "minhash", "n": n, "prefix": prefix,
        "ours_s": round(ours_s, 2), "ours_rps": round(ours_rps), "ours_prefix_rps": round(pre_rps),
        "baseline_rps": round(base_rps), "speedup": round(pre_rps / base_rps, 1),
        "ours_cpu_rps": round(n / ours_cpu), "speedup_cpu": round(base_cpu / ours_pre_cpu, 1),
        "peak_rss_mb": round(peak_mb), "identical_prefix": identical,
        "dups_found": dedup.counts["dropped"], "dups_planted": planted, "planted_found": planted_found,
        "false_drops": false_drops, "scheme": cfg["scheme"], "bands": cfg["bands"], "rows": cfg["rows_per_band"],
    }))


if __name__ == "__main__":
    main()
