"""Named crash points for the crash-safety tests (failpoints): a no-op unless DATAGEN_CRASH_AT is set.

`DATAGEN_CRASH_AT=publish.renamed` kills the process with SIGKILL the first time that point is
reached; `name@3` on the third time. SIGKILL, not an exception: nothing gets to clean up, exactly
like a power cut or the OOM killer.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get("DATAGEN_CRASH_AT")
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
