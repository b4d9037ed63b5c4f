"""Check the endpoint before a run starts, so a wrong key, a wrong model or a dead server is one
clear line in seconds, not a failed flow run after the first round."""
from __future__ import annotations

import random
import time

import httpx

from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.client import RETRY_STATUS
from datagen.teacher.retry import backoff_delay, retry_after_seconds
from datagen.teacher.config import TeacherConfig


def check_endpoint(cfg: TeacherConfig, rng: random.Random | None = None) -> list[str]:
    """GET {base_url}/models with the run's key and retry policy; returns the listed model ids."""
    if cfg.embedded:
        return []
    rng = rng or random.Random()
    host = httpx.URL(cfg.base_url).host
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    last = ""
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            time.sleep(backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, rng))
        try:
            resp = httpx.get(f"{cfg.base_url}/models", headers=headers, timeout=min(cfg.timeout_s, 30.0))
        except httpx.TimeoutException:
            last = "timeout"
            continue
        except httpx.TransportError as e:
            last = f"connection failed ({type(e).__name__})"
            continue
        if resp.status_code in RETRY_STATUS:
            last = f"HTTP {resp.status_code}"
            wait = retry_after_seconds(resp.headers)
            if wait:
                time.sleep(min(wait, cfg.backoff_max_s))
            continue
        if resp.status_code in (401, 403):
            raise DatagenError(f"teacher at {host}: HTTP {resp.status_code}, the API key was refused "
                               "(check OPENAI_API_KEY)")
        if resp.status_code != 200:
            return []      # some servers have no /models; the first real request will tell
        try:
            ids = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return []
        # No verdict on the model name here: servers accept names they do not list (Ollama serves
        # "llama3.1" but lists "llama3.1:latest"); an unknown model is a clear 404 on the first call.
        return ids
    raise TeacherUnavailable(f"teacher at {host}: unreachable after {cfg.max_retries} retries ({last}); "
                             f"is the server running at --base-url {_safe_url(cfg.base_url)}?")


def _safe_url(url: str) -> str:
    u = httpx.URL(url)
    return str(u.copy_with(username=None, password=None, query=None))
