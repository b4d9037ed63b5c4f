"""The shape every filter answers with, so "why was this row dropped?" always has an answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


KEEP = Verdict(True)


def drop(reason: str, **detail: Any) -> Verdict:
    return Verdict(False, reason, detail)
