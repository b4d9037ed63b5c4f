"""How the teacher's HTTP client is built: one place to tune connection pooling for throughput."""
from __future__ import annotations

import httpx


def make_async_client(base_url: str, headers: dict[str, str], max_concurrency: int,
                      timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
    return httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                             timeout=httpx.Timeout(timeout_s, connect=10.0))
