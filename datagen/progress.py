"""Live counters a display can read while a flow runs (the CLI installs one; otherwise nobody looks)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    target: int = 0
    accepted: int = 0
    stage: str = "starting"
    round: int = 0
    usages: list[Any] = field(default_factory=list)   # teacher.usage.Usage objects, one per role
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def totals(self) -> dict[str, int]:
        out = {"requests": 0, "cache_hits": 0, "tokens": 0, "retries": 0}
        for u in self.usages:
            out["requests"] += u.requests
            out["cache_hits"] += u.cache_hits
            out["tokens"] += u.prompt_tokens + u.completion_tokens
            out["retries"] += sum(u.retries.values())
        return out


_current = Progress()


def current() -> Progress:
    return _current


def install(progress: Progress) -> Progress:
    global _current
    _current = progress
    return progress
