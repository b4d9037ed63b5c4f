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
    concurrency: Any = None                           # the teacher's AdaptiveConcurrency: in flight / allowed
    _rate: list[tuple[float, int]] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def in_flight(self) -> tuple[int, int] | None:
        c = self.concurrency
        return (c.in_flight, c.limit) if c is not None else None

    def requests_per_s(self, now: float) -> float:
        """Answered requests per second over the last ~10 s (sampled by whoever displays it)."""
        n = self.totals()["requests"]
        self._rate.append((now, n))
        while len(self._rate) > 2 and now - self._rate[1][0] >= 10:
            self._rate.pop(0)
        t0, n0 = self._rate[0]
        return (n - n0) / (now - t0) if now > t0 else 0.0

    def totals(self) -> dict[str, int]:
        out = {"requests": 0, "cache_hits": 0, "tokens": 0, "retries": 0}
        for u in self.usages:
            out["requests"] += u.requests
            out["cache_hits"] += u.cache_hits
            out["tokens"] += u.prompt_tokens + u.completion_tokens
            out["retries"] += sum(u.retries.values())
        return out


class PlainReporter:
    """Without a terminal (CI, nohup, a scheduler), a progress line every `interval_s` seconds, so a
    log shows the run is alive and what it is retrying even when nothing else is logged for minutes."""

    def __init__(self, progress: Progress, started: float, line, interval_s: float = 15.0):
        self.progress, self.started, self.line, self.interval_s = progress, started, line, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="datagen-progress", daemon=True)

    def _loop(self) -> None:
        import sys
        while not self._stop.wait(self.interval_s):
            print(self.line(self.progress, self.started), file=sys.stderr, flush=True)

    def __enter__(self) -> "PlainReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


_current = Progress()


def current() -> Progress:
    return _current


def install(progress: Progress) -> Progress:
    global _current
    _current = progress
    return progress
