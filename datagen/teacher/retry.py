"""When to try again: exponential backoff with jitter, and what the server says in Retry-After."""
from __future__ import annotations

import email.utils
import random
import time

import httpx


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff for retry `attempt` (1, 2, ...) with jitter over its upper half, so many
    clients that failed together do not retry in step."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Honour `retry-after-ms` (OpenAI) and `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
