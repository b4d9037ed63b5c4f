"""Near-duplicate removal: MinHash signatures, LSH banding, and a check on the estimated Jaccard.

Why it is built this way:

- Signatures are datasketch's, bit for bit. datasketch 2.0.0 changed MinHash's default permutation scheme
  (pre-2.0 "legacy" -> "affine32"), so a bare ``MinHash()`` would silently change our decisions when the
  library does. We name the scheme and the input hash (:data:`SCHEME`, :data:`HASHFUNC`) and record both in
  :meth:`MinHashDedup.config`. Calling ``MinHash.update`` per shingle costs ~10 us each (a numpy call per
  shingle), far too slow for a million rows, so :class:`MinHasher` computes the same scheme vectorised over
  a whole batch of records; tests check it against ``datasketch.MinHash`` hash values.
- Banding uses the (bands, rows) that ``datasketch.MinHashLSH`` picks for the threshold, but the band index
  is ours: MinHashLSH keeps each band as a bytes object (in a key list and as a bucket key) and each bucket
  as a set, ~4.9 KB per record at 14 bands (tracemalloc), before the MinHash objects the Jaccard check
  needs. Ours keeps one 64-bit int key per band in a plain dict plus the signature of each *kept* record
  in a numpy block (512 B at 128 permutations): ~1.9 KB per kept record. Tests and the benchmark check its
  decisions against MinHashLSH.
- A band collision only makes a candidate. A record is dropped when a candidate's estimated Jaccard
  (the share of equal signature slots, as ``MinHash.jaccard``) reaches the threshold, so the threshold
  means what the config says and every drop carries the estimate that justified it.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from itertools import islice
from typing import Any, Literal

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32

from datagen.errors import DatagenError
from datagen.filters.exact_dedup import DEFAULT_FIELDS, NORMALISATION, check_fields, normalise, record_text
from datagen.filters.verdict import KEEP, Verdict, drop
from datagen.records import Record

SCHEME = "affine32"
"""datasketch's permutation scheme: fmix32(sha1_32(shingle)) then a*h+b mod 2^32 with odd a."""
HASHFUNC = "datasketch.hashfunc.sha1_hash32"
"""The input hash: first 4 bytes of SHA-1, little-endian (datasketch's default for affine32)."""
SEED = 1
"""datasketch's default seed for the permutation parameters; named so a manifest records it."""

ShingleUnit = Literal["word", "char"]
DEFAULT_SHINGLE_SIZE: dict[str, int] = {"word": 3, "char": 5}

_WORD = re.compile(r"\w+")
_BATCH = 256  # records per vectorised step: the (num_perm x shingles) block stays in cache
_BLOCK_ROWS = 1 << 14  # signatures per storage block: growth without re-copying everything
_MAX32 = np.uint32(0xFFFFFFFF)
# MurmurHash3 fmix32, which datasketch applies once to every input hash under "affine32".
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def shingles(text: str, unit: ShingleUnit = "word", size: int | None = None) -> list[str]:
    """The shingles MinHash sees, in order (a record's set is these, repeats ignored).

    Words are ``\\w+`` runs of the NFKC-casefolded text, so punctuation and spacing never split a shingle;
    characters come from :func:`normalise` (spacing collapsed, punctuation kept but for the ends).
    A text shorter than one shingle becomes a single shingle of itself, so short records still compare.
    """
    size = size or DEFAULT_SHINGLE_SIZE[unit]
    if unit == "char":
        norm = normalise(text)
        if len(norm) <= size:
            return [norm] if norm else []
        return [norm[i : i + size] for i in range(len(norm) - size + 1)]
    # NFKC + casefold is all words need: whitespace and punctuation are never inside a \w+ run, so the
    # rest of normalise() (a third of the hashing time) would change nothing but an edge "_".
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if len(words) <= size:
        return [" ".join(words)] if words else []
    if size == 3:  # the default, unrolled: shingling is a third of the per-record cost
        return [f"{a} {b} {c}" for a, b, c in zip(words, words[1:], words[2:])]
    return [" ".join(gram) for gram in zip(*(words[i:] for i in range(size)))]


class MinHasher:
    """datasketch-identical MinHash signatures for many texts at once.

    The permutation parameters are taken from a real ``datasketch.MinHash`` built with the named scheme
    and seed, so only the arithmetic is ours, not the randomness.
    """

    def __init__(self, num_perm: int = 128, seed: int = SEED, unit: ShingleUnit = "word", size: int | None = None):
        self.num_perm = num_perm
        self.seed = seed
        self.unit = unit
        self.size = size or DEFAULT_SHINGLE_SIZE[unit]
        proto = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME, hashfunc=sha1_hash32)
        a, b = proto.permutations
        self._a = np.ascontiguousarray(a, dtype=np.uint32).reshape(-1, 1)
        self._b = np.ascontiguousarray(b, dtype=np.uint32).reshape(-1, 1)

    def shingles(self, text: str) -> list[str]:
        return shingles(text, self.unit, self.size)

    def datasketch_minhash(self, text: str) -> MinHash:
        """The plain-datasketch MinHash of a text (one ``update`` per shingle): the reference we must equal."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=SCHEME, hashfunc=sha1_hash32)
        for s in self.shingles(text):
            m.update(s.encode("utf-8"))
        return m

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """One uint32 row of ``num_perm`` values per text; an empty text gets the all-max row, like an
        empty ``MinHash``."""
        sha1 = hashlib.sha1
        digests: list[bytes] = []
        starts: list[int] = []
        rows: list[int] = []
        for row, text in enumerate(texts):
            grams = self.shingles(text)
            if grams:
                starts.append(len(digests))
                rows.append(row)
                digests.extend([sha1(g.encode("utf-8")).digest() for g in grams])
        sigs = np.full((len(texts), self.num_perm), _MAX32, dtype=np.uint32)
        if not digests:
            return sigs
        # sha1_hash32 == first 4 digest bytes as little-endian uint32 == word 0 of each 20-byte digest.
        hv = np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, 5)[:, 0].astype(np.uint32)
        phv = np.multiply.outer(self._a[:, 0], _fmix32(hv))  # (num_perm, shingles), wraps mod 2^32
        phv += self._b
        sigs[rows] = np.minimum.reduceat(phv, starts, axis=1).T
        return sigs


class _BandIndex:
    """LSH buckets over kept records: per band, a 64-bit key of the band's values -> kept index(es).

    The key is a multilinear hash of the band (random odd 64-bit multipliers, sum mod 2^64), so two different
    bands of the same position share a key with probability about 2^-60. Even then the record is only a
    *candidate*: it is dropped only if its estimated Jaccard reaches the threshold, as with MinHashLSH's
    byte-exact buckets, so a key collision can change a decision only if it coincides with a near-duplicate
    that no band caught.
    """

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        rng = np.random.default_rng(0x6D696E68617368)  # fixed: same keys, same decisions, every run
        self._mult = (rng.integers(0, 1 << 63, (bands, rows), dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]

    def keys(self, sigs: np.ndarray) -> list[list[int]]:
        used = sigs[:, : self.bands * self.rows].reshape(len(sigs), self.bands, self.rows).astype(np.uint64)
        return (used * self._mult).sum(axis=2, dtype=np.uint64).tolist()


class _SignatureStore:
    """Signatures of kept records only, in fixed-size numpy blocks (no per-record Python objects)."""

    def __init__(self, num_perm: int):
        self.num_perm = num_perm
        self.blocks: list[np.ndarray] = []
        self.n = 0

    def append(self, sig: np.ndarray) -> int:
        if self.n == len(self.blocks) * _BLOCK_ROWS:
            self.blocks.append(np.empty((_BLOCK_ROWS, self.num_perm), dtype=np.uint32))
        self.blocks[-1][self.n % _BLOCK_ROWS] = sig
        self.n += 1
        return self.n - 1

    def row(self, i: int) -> np.ndarray:
        return self.blocks[i // _BLOCK_ROWS][i % _BLOCK_ROWS]


MAX_NUM_PERM = 1024


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class MinHashDedup:
    """First seen is kept; a later record whose estimated Jaccard with a kept one reaches the threshold is
    dropped, pointing at that kept record. Dropped records are not indexed: the kept one stands for them.

    Memory per kept record: its signature (4 * num_perm bytes), one dict entry per band and its id.
    """

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle: ShingleUnit = "word",
        shingle_size: int | None = None,
        fields: Sequence[str] = DEFAULT_FIELDS,
        seed: int = SEED,
        lsh_weights: tuple[float, float] = (0.1, 0.9),
    ) -> None:
        if not _is_number(threshold) or not 0.0 < threshold <= 1.0:
            raise DatagenError(f"minhash threshold: {threshold!r} must be a number in (0, 1]")
        if not _is_int(num_perm) or not 2 <= num_perm <= MAX_NUM_PERM:
            # each kept record holds 4 * num_perm bytes, and LSH tuning grows with num_perm squared
            raise DatagenError(f"minhash num_perm: {num_perm!r} must be an integer from 2 to {MAX_NUM_PERM}")
        if not isinstance(shingle, str) or shingle not in DEFAULT_SHINGLE_SIZE:
            raise DatagenError(f"minhash shingle: {shingle!r} must be one of {', '.join(DEFAULT_SHINGLE_SIZE)}")
        if shingle_size is not None and (not _is_int(shingle_size) or shingle_size < 1):
            raise DatagenError(f"minhash shingle_size: {shingle_size!r} must be an integer of at least 1")
        if not _is_int(seed):
            raise DatagenError(f"minhash seed: {seed!r} must be an integer")
        if (not isinstance(lsh_weights, (list, tuple)) or len(lsh_weights) != 2
                or not all(_is_number(w) and w >= 0 for w in lsh_weights)):
            raise DatagenError(f"minhash lsh_weights: {lsh_weights!r} must be two non-negative numbers "
                               "(false-positive weight, false-negative weight)")
        if isinstance(fields, str):
            fields = [fields]
        if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields):
            raise DatagenError(f"minhash fields: {fields!r} must be a list of field names")
        self.threshold = threshold
        self.fields = check_fields(fields)
        self.hasher = MinHasher(num_perm, seed, shingle, shingle_size)
        # Only for its (bands, rows) choice. Recall-leaning weights (false positive, false negative): a false
        # candidate costs one signature comparison, a missed one leaves a duplicate in the dataset. With
        # datasketch's (0.5, 0.5) a pair at Jaccard 0.85 is missed 31% of the time; with (0.1, 0.9), 2.5%.
        try:
            lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=lsh_weights)
        except ValueError as err:
            raise DatagenError(f"minhash lsh_weights/threshold/num_perm: {err}") from err
        self.lsh_weights = tuple(lsh_weights)
        self._index = _BandIndex(lsh.b, lsh.r)
        self._store = _SignatureStore(num_perm)
        self._kept_ids: list[str] = []
        self.counts = {"seen": 0, "kept": 0, "dropped": 0, "empty": 0}

    def check_and_add(self, record_id: str, text: str) -> Verdict:
        return next(self.check_and_add_many([(record_id, text)]))

    def check_and_add_many(self, items: Iterable[tuple[str, str]]) -> Iterator[Verdict]:
        """Same decisions as ``check_and_add`` one by one, in order, but hashed a batch at a time.

        Lazy: input is read and hashed one batch ahead, but each record joins the index only when its
        verdict is taken, so a later record always sees exactly the records decided before it.
        """
        it = iter(items)
        while batch := list(islice(it, _BATCH)):
            sigs = self.hasher.signatures([text for _, text in batch])
            empty = (sigs == _MAX32).all(axis=1).tolist()
            keys = self._index.keys(sigs)
            for (record_id, _), sig, band_keys, is_empty in zip(batch, sigs, keys, empty):
                self.counts["seen"] += 1
                if is_empty:  # nothing to compare; length/quality filters judge empty rows
                    self.counts["empty"] += 1
                    yield KEEP
                else:
                    yield self._decide(record_id, sig, band_keys)

    def _decide(self, record_id: str, sig: np.ndarray, band_keys: list[int]) -> Verdict:
        tables = self._index.tables
        found = list(map(dict.get, tables, band_keys))
        if found.count(None) == len(found):  # the common case: no bucket shared with a kept record
            idx = self._keep(record_id, sig)
            for table, key in zip(tables, band_keys):
                table[key] = idx
            return KEEP
        candidates: set[int] = set()
        for hit in found:
            if hit is None:
                continue
            if isinstance(hit, int):
                candidates.add(hit)
            else:
                candidates.update(hit)
        best, best_matches = -1, -1
        for cand in sorted(candidates):  # ascending: ties go to the first seen
            matches = int(np.count_nonzero(self._store.row(cand) == sig))
            if matches > best_matches:
                best, best_matches = cand, matches
        num_perm = self.hasher.num_perm
        if best_matches / num_perm >= self.threshold:
            self.counts["dropped"] += 1
            return drop("minhash_duplicate", duplicate_of=self._kept_ids[best], jaccard_estimate=best_matches / num_perm)
        idx = self._keep(record_id, sig)
        for table, key, hit in zip(tables, band_keys, found):
            if hit is None:
                table[key] = idx
            elif isinstance(hit, int):
                table[key] = [hit, idx]
            else:
                hit.append(idx)
        return KEEP

    def _keep(self, record_id: str, sig: np.ndarray) -> int:
        self.counts["kept"] += 1
        self._kept_ids.append(record_id)
        return self._store.append(sig)

    def config(self) -> dict[str, Any]:
        """Everything that decides which rows are dropped, for the version's manifest."""
        return {
            "method": "minhash_lsh",
            "threshold": self.threshold,
            "num_perm": self.hasher.num_perm,
            "bands": self._index.bands,
            "rows_per_band": self._index.rows,
            "lsh_weights": list(self.lsh_weights),
            "shingles": {"unit": self.hasher.unit, "size": self.hasher.size},
            "fields": list(self.fields),
            "normalisation": "nfkc+casefold+words(\\w+)" if self.hasher.unit == "word" else NORMALISATION,
            "scheme": SCHEME,
            "hashfunc": HASHFUNC,
            "seed": self.hasher.seed,
            "datasketch": version("datasketch"),
        }


@dataclass
class Representatives:
    kept: list[Record] = field(default_factory=list)
    dropped: list[tuple[Record, Verdict]] = field(default_factory=list)


def representatives(
    records: Iterable[Record],
    score_key: str | Callable[[Record], float | None] | None = "judge",
    dedup: MinHashDedup | None = None,
) -> Representatives:
    """One record per near-duplicate cluster: the best-scored one, ties (and unscored) by first seen.

    Records are fed to the dedup in descending score order, so each cluster's first-seen member is its best;
    every other member is dropped pointing at it. A record without a score ranks below every scored one,
    so with no scores at all (or ``score_key=None``) this is plain first-seen dedup. Both lists keep the
    input order. ``dedup`` carries the configuration and is consumed (its index grows).
    """
    dedup = dedup or MinHashDedup()
    records = list(records)
    order = sorted(range(len(records)), key=lambda i: _rank(records[i], score_key))  # stable sort
    items = ((records[i].id, record_text(records[i], dedup.fields)) for i in order)
    verdicts: list[Verdict] = [KEEP] * len(records)
    for i, verdict in zip(order, dedup.check_and_add_many(items)):
        verdicts[i] = verdict
    out = Representatives()
    for record, verdict in zip(records, verdicts):
        if verdict.keep:
            out.kept.append(record)
        else:
            out.dropped.append((record, verdict))
    return out


def _rank(record: Record, score_key: str | Callable[[Record], float | None] | None) -> tuple[int, float]:
    if score_key is None:
        return (1, 0.0)
    value = score_key(record) if callable(score_key) else record.scores.get(score_key)
    if isinstance(value, Mapping):  # a judge's {"score": 8, "rationale": "..."}
        value = value.get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return (1, 0.0)
    return (0, -float(value))
