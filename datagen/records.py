"""The one canonical row that flows through every stage (DESIGN §2).

Exporters derive every output format from this shape; nothing else is written by hand.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

METHODS = ("seed", "self_instruct", "evol", "distill", "translate")
_CONTENT_ID = re.compile(r"[0-9a-f]{16}")


def content_id(instruction: str, input: str = "", output: str = "", conversation: list | None = None) -> str:
    """Stable id: the same content always gets the same id, across runs and machines."""
    payload = json.dumps(
        {"i": instruction, "x": input, "o": output, "c": conversation or []},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Record:
    instruction: str
    input: str = ""
    output: str = ""
    conversation: list[dict[str, str]] = field(default_factory=list)
    system: str = ""
    lang: str = ""
    method: str = "seed"
    parents: list[str] = field(default_factory=list)
    round: int = 0
    op: str = ""
    teacher: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id(self.instruction, self.input, self.output, self.conversation)

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict deep-copies recursively and was ~45% of a streaming dedup's time. Callers
        # serialise the result at once; a shallow copy of each container keeps the record itself safe
        # from a caller that adds or removes keys.
        d = {}
        for name in _FIELDS:
            v = getattr(self, name)
            d[name] = v.copy() if isinstance(v, (list, dict)) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


_FIELDS = tuple(f.name for f in fields(Record))


class UniqueIds:
    """Makes every row of one version addressable on its own.

    A content hash gives byte-identical rows one id, so a dropped copy would be `duplicate_of` itself
    and `why` could not tell it from the copy that was kept. The first occurrence keeps the hash; later
    ones become `<hash>-2`, `<hash>-3`, ... in reading order, so a rerun over the same input assigns the
    same ids. Ids already unique (a version's own records.jsonl) pass through unchanged.

    Memory: one 64-bit int per plain content id (a set entry, not a copy of the record), so streaming a
    million records stays cheap.
    """

    def __init__(self) -> None:
        self._seen: set[int | str] = set()
        self._next: dict[str, int] = {}   # only for ids seen more than once

    @staticmethod
    def _key(record_id: str) -> int | str:
        return int(record_id, 16) if _CONTENT_ID.fullmatch(record_id) else record_id

    def assign(self, record: Record) -> Record:
        key = self._key(record.id)
        if key not in self._seen:
            self._seen.add(key)
            return record
        base = record.id
        k = self._next.get(base, 2)
        while f"{base}-{k}" in self._seen:
            k += 1
        self._next[base] = k + 1
        record.id = f"{base}-{k}"
        self._seen.add(record.id)
        return record
