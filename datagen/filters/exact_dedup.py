"""Exact dedup on normalised text, and the normalisation every dedup filter shares.

Generated data repeats itself in trivial ways (a trailing full stop, a capital letter, a double space, a
full-width digit from a teacher). Those copies carry no new information, so they are compared after a
normalisation that erases exactly those differences and nothing else — words and their order still count.
"""
from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from datagen.errors import DatagenError
from datagen.filters.verdict import KEEP, Verdict, drop
from datagen.records import Record

DEFAULT_FIELDS: tuple[str, ...] = ("instruction", "input", "output")
_TEXT_FIELDS = ("instruction", "input", "output", "system")
# Recorded in manifests: if this description changes, so may the decisions.
NORMALISATION = "nfkc+casefold+collapse_whitespace+strip_end_punctuation"


def normalise(text: str) -> str:
    """NFKC, casefold, collapse whitespace, strip punctuation at both ends.

    NFKC before casefold so compatibility forms (ligatures, full-width letters) fold the same way as their
    plain spellings; punctuation is stripped only at the ends because inside the text it changes meaning.
    """
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge_noise(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """Reject an unknown field name up front, so a typo in a config is not a silent no-op filter."""
    allowed = _TEXT_FIELDS + ("conversation",)
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, (list, tuple)):
        raise DatagenError(f"dedup fields: expected a list of field names, got {fields!r}")
    fields = tuple(fields)
    unknown = [f for f in fields if f not in allowed]
    if unknown or not fields:
        raise DatagenError(
            f"dedup fields: unknown or empty {unknown or list(fields)}; choose from {', '.join(allowed)}"
        )
    return fields


def record_text(record: Record, fields: Iterable[str] = DEFAULT_FIELDS) -> str:
    """The text a dedup filter compares: the chosen fields, non-empty ones joined by newlines.

    Conversations contribute their turns' contents (not the role names, which every conversation shares).
    """
    parts: list[str] = []
    for name in fields:
        if name == "conversation":
            parts.extend(str(turn.get("content", "")) for turn in record.conversation)
        else:
            parts.append(getattr(record, name))
    return "\n".join(p for p in parts if p)


class ExactDedup:
    """Remembers a 128-bit digest of every kept text; a later identical (normalised) text is dropped.

    Only digests are kept (16 bytes plus the kept id per record) so a million records cost tens of MB,
    not a copy of the corpus. blake2b-128 makes an accidental collision practically impossible.
    """

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS) -> None:
        self.fields = check_fields(fields)
        self._first: dict[bytes, str] = {}
        self.counts = {"seen": 0, "kept": 0, "dropped": 0}

    def check_and_add(self, record_id: str, text: str) -> Verdict:
        self.counts["seen"] += 1
        key = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()
        first = self._first.get(key)
        if first is None:
            self._first[key] = record_id
            self.counts["kept"] += 1
            return KEEP
        self.counts["dropped"] += 1
        return drop("exact_duplicate", duplicate_of=first)

    def config(self) -> dict[str, Any]:
        return {
            "method": "exact",
            "fields": list(self.fields),
            "normalisation": NORMALISATION,
            "hash": "blake2b-128",
        }
