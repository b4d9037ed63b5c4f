"""Decontamination: drop records that share a long word n-gram with an evaluation set.

A student trained on benchmark text scores well on that benchmark for the wrong reason, and a teacher
happily reproduces benchmark questions it has memorised. The check is the usual one (13-gram overlap,
as in the GPT-3 paper): normalise both sides to lower-case words of letters and digits, and drop a
record when any of its word 13-grams also occurs in an eval item.

Memory. Eval sets can hold millions of n-grams, so none is stored as text: each becomes a 64-bit
hash, kept in a sorted `array('Q')` beside an `array('I')` of item numbers (12 bytes per n-gram,
against ~100 for a Python dict of strings), with a 65,536-bucket index on the hash's top 16 bits so
a lookup is a short binary search. The hash is a polynomial rolling hash over per-word 64-bit digests,
so a record's n-grams are hashed in one pass whatever n is. A hash collision could in principle flag a
clean record; at 64 bits that is about one in 10^19 per lookup and the detail shows the n-gram text, so
a reviewer can see it.

Short items. An eval item with fewer than n words ("Who wrote Hamlet and in which year?") has no
13-gram; it is matched whole: the record is contaminated if it contains the item's full word sequence.
Items under `min_item_words` words (default 8) are skipped, because a short string such as an answer
label ("B", "positive") or "what is the capital of france" would match everything and mean nothing.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from array import array
from bisect import bisect_left
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from datagen import jsontext
from datagen.errors import DatagenError
from datagen.filters.params import strings
from datagen.filters.verdict import KEEP, Verdict, drop

_WORD = re.compile(r"[^\W_]+")
_MASK = (1 << 64) - 1
_BASE = 0x100000001B3  # an odd 64-bit multiplier (FNV prime): every power stays invertible mod 2^64
_BUCKET_SHIFT = 48
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def normalised_words(text: str) -> list[str]:
    """Lower-case words of letters/digits: punctuation, case and width variants must not hide a copy."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=1 << 17)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def ngram_hashes(words: Sequence[str], n: int) -> Iterator[tuple[int, int]]:
    """(start, hash) of every word n-gram, each hash updated from the previous one in O(1)."""
    if n <= 0 or len(words) < n:
        return
    codes = [_word_hash(w) for w in words]
    top = pow(_BASE, n - 1, 1 << 64)
    h = 0
    for c in codes[:n]:
        h = (h * _BASE + c) & _MASK
    yield 0, h
    for i in range(1, len(codes) - n + 1):
        h = ((h - codes[i - 1] * top) * _BASE + codes[i + n - 1]) & _MASK
        yield i, h


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (lists and nested objects included: choices, contexts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class Decontaminator:
    """Index of eval-set n-grams; `check(record)` drops a record that shares one.

    Stateful only while it is built (`add`, `load`); `check` never changes what it answers.
    """

    name = "decontaminate"
    reason = "contamination"
    reasons = ("contamination",)

    def __init__(self, n: int = 13, *, min_item_words: int = 8) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(min_item_words, bool) or not isinstance(min_item_words, int) or min_item_words < 1:
            raise ValueError(f"min_item_words must be a positive integer, got {min_item_words!r}")
        self.n = n
        self.min_item_words = min(min_item_words, n)
        self._hashes = array("Q")
        self._refs = array("I")
        self._buckets = array("I")
        self._items: list[tuple[str, Any, int]] = []  # (eval file, item id, line)
        self._short_lengths: set[int] = set()
        self._sorted = True

    # ------------------------------------------------------------------ building

    @classmethod
    def from_files(
        cls,
        paths: str | Path | Iterable[str | Path],
        n: int = 13,
        *,
        fields: Iterable[str] | None = None,
        id_field: str | None = "id",
        min_item_words: int = 8,
    ) -> "Decontaminator":
        """Index eval files: JSONL (`.jsonl`, `.ndjson`, `.json`; every string value of each object,
        or only `fields`) or plain text (one item per line). The item id reported is the object's
        `id_field` value when it has one, else the line number."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        paths = list(paths) if isinstance(paths, (list, tuple)) else paths
        if not isinstance(paths, list) or not all(isinstance(p, (str, Path)) for p in paths):
            raise DatagenError(f"paths must be an eval file or a list of them, got {paths!r}")
        if not paths:
            raise DatagenError("paths: give at least one eval file (JSONL or text)")
        if fields is not None:
            fields = strings("fields", fields, allow_empty=False)
        if id_field is not None and not isinstance(id_field, str):
            raise DatagenError(f"id_field must be a string, got {id_field!r}")
        index = cls(n, min_item_words=min_item_words)
        for path in paths:
            index.load(path, fields=fields, id_field=id_field)
        index._ensure_sorted()
        return index

    from_config = from_files  # so `build_filter("decontaminate", paths=[...])` works

    def load(self, path: str | Path, *, fields: Iterable[str] | None = None, id_field: str | None = "id") -> int:
        """Add one eval file; returns how many items were indexed. Raises DatagenError (file:line)."""
        path = Path(path)
        if not path.is_file():
            raise DatagenError(f"{path}: eval file not found")
        fields = [fields] if isinstance(fields, str) else (list(fields) if fields else None)
        jsonl = path.suffix.lower() in JSONL_SUFFIXES
        loaded = 0
        for line_no, line in self._lines(path):
            if not line.strip():
                continue
            if jsonl:
                item_id, texts = self._parse_jsonl(path, line_no, line, fields, id_field)
            else:
                item_id, texts = line_no, [line]
            loaded += self.add(texts, path.name, item_id, line=line_no)
        if not loaded:
            what = f"fields {fields}" if fields else "string values"
            raise DatagenError(
                f"{path}: no eval item has {self.min_item_words} or more words in its {what}; "
                "nothing could be checked against it"
            )
        return loaded

    def add(self, texts: str | Iterable[str], eval_file: str, eval_item: Any, *, line: int = 0) -> int:
        """Index the texts of one eval item; returns 1 if any was long enough to index, else 0."""
        if isinstance(texts, str):
            texts = [texts]
        ref = len(self._items)
        hashes: set[int] = set()
        for text in texts:
            words = normalised_words(text)
            if len(words) < self.min_item_words:
                continue
            if len(words) < self.n:
                self._short_lengths.add(len(words))
                hashes.update(h for _, h in ngram_hashes(words, len(words)))
            else:
                hashes.update(h for _, h in ngram_hashes(words, self.n))
        if not hashes:
            return 0
        self._items.append((eval_file, eval_item, line))
        self._hashes.extend(hashes)
        self._refs.extend([ref] * len(hashes))
        self._sorted = False
        return 1

    @staticmethod
    def _lines(path: Path) -> Iterator[tuple[int, str]]:
        """Lines decoded one by one, so a bad byte is reported on its own line number."""
        try:
            with path.open("rb") as f:
                for line_no, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DatagenError(f"{path}:{line_no}: not UTF-8 text ({e.reason})") from None
                    if line_no == 1:
                        line = line.lstrip("\ufeff")  # a byte-order mark is not part of item 1
                    yield line_no, line.rstrip("\r\n")
        except OSError as e:
            raise DatagenError(f"{path}: cannot read eval file ({e.strerror})") from None

    @staticmethod
    def _parse_jsonl(path: Path, line_no: int, line: str, fields, id_field) -> tuple[Any, list[str]]:
        try:
            obj = jsontext.loads(line, f"{path}:{line_no}")
        except json.JSONDecodeError as e:
            raise DatagenError(f"{path}:{line_no}: invalid JSON ({e.msg}, column {e.colno})") from None
        if isinstance(obj, str) and not fields:
            return line_no, [obj]
        if not isinstance(obj, dict):
            raise DatagenError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        item_id = obj.get(id_field) if id_field else None
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            item_id, id_key = line_no, None
        else:
            id_key = id_field
        if fields:
            missing = [f for f in fields if f not in obj]
            if missing:
                raise DatagenError(f"{path}:{line_no}: field {missing[0]!r} missing (have: {', '.join(obj)})")
            return item_id, [s for f in fields for s in _strings(obj[f])]
        return item_id, [s for k, v in obj.items() if k != id_key for s in _strings(v)]

    def _ensure_sorted(self) -> None:
        if self._sorted:
            return
        order = sorted(range(len(self._hashes)), key=self._hashes.__getitem__)
        self._hashes = array("Q", (self._hashes[i] for i in order))
        self._refs = array("I", (self._refs[i] for i in order))
        del order
        self._buckets = array(
            "I", (bisect_left(self._hashes, b << _BUCKET_SHIFT) for b in range(1 << (64 - _BUCKET_SHIFT)))
        )
        self._buckets.append(len(self._hashes))
        self._sorted = True

    # ------------------------------------------------------------------ checking

    def __len__(self) -> int:
        """Number of indexed n-gram hashes."""
        return len(self._hashes)

    @property
    def item_count(self) -> int:
        return len(self._items)

    def _find(self, h: int) -> int | None:
        b = h >> _BUCKET_SHIFT
        lo, hi = self._buckets[b], self._buckets[b + 1]
        i = bisect_left(self._hashes, h, lo, hi)
        return self._refs[i] if i < hi and self._hashes[i] == h else None

    def check(self, record: Any) -> Verdict:
        """Drop on the first shared n-gram: {eval_file, eval_item, eval_line, ngram, field}.

        The fields are checked as one word sequence, so an eval item split over fields (question in
        the instruction, its passage in the input: the Self-Instruct layout) or over conversation turns
        is caught too; `field` then names every part the n-gram spans ("instruction+input").
        """
        self._ensure_sorted()
        if not self._hashes:
            return KEEP
        texts = _record_texts(record)
        sequences = [texts]
        users = [(f"conversation[{i}]", t.get("content") or "")
                 for i, t in enumerate(getattr(record, "conversation", None) or []) if t.get("role") == "user"]
        if len(users) > 1:   # a question asked over several user turns, with answers in between
            sequences.append(users)
        for seq in sequences:
            parts, words = _words_of(seq)
            for k in (self.n, *sorted(self._short_lengths, reverse=True)):
                for start, h in ngram_hashes(words, k):
                    ref = self._find(h)
                    if ref is not None:
                        eval_file, eval_item, line = self._items[ref]
                        return drop(
                            self.reason,
                            eval_file=eval_file,
                            eval_item=eval_item,
                            eval_line=line,
                            ngram=" ".join(words[start:start + k]),
                            field=_span_label(parts, start, start + k),
                        )
        return KEEP

    __call__ = check
    filter = check


def _record_texts(record: Any) -> list[tuple[str, str]]:
    """Every text a student would train on, in reading order: the prompt side as much as the answer."""
    texts = [("system", getattr(record, "system", "") or "")]
    conversation = getattr(record, "conversation", None) or []
    if conversation:
        texts += [(f"conversation[{i}]", t.get("content") or "") for i, t in enumerate(conversation)]
    else:
        texts += [(f, getattr(record, f, "") or "") for f in ("instruction", "input", "output")]
    return [(label, text) for label, text in texts if text]


def _words_of(texts: list[tuple[str, str]]) -> tuple[list[tuple[str, int, int]], list[str]]:
    """The texts' words as one sequence, and (label, start, end) of each text within it."""
    parts: list[tuple[str, int, int]] = []
    words: list[str] = []
    for label, text in texts:
        w = normalised_words(text)
        if w:
            parts.append((label, len(words), len(words) + len(w)))
            words.extend(w)
    return parts, words


def _span_label(parts: list[tuple[str, int, int]], start: int, end: int) -> str:
    labels = [label for label, a, b in parts if a < end and start < b]
    if len(labels) > 3 and all(label.startswith("conversation[") for label in labels):
        return f"{labels[0]}..{labels[-1]}"
    return "+".join(labels)
