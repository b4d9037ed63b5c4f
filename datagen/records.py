"""The one canonical row that flows through every stage (DESIGN §2).

Exporters derive every output format from this shape; nothing else is written by hand.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

METHODS = ("seed", "self_instruct", "evol", "distill", "translate")


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
