"""Check the endpoint before a run starts, so a wrong key, a wrong URL or a dead server is one clear
line in seconds, not a failed flow run after the first round.

The same GET /models also tells the response cache which model the endpoint serves (see cache.py):
`models_listing` is that one call, used by the preflight and, once per run, by the Teacher.
"""
from __future__ import annotations

import random
import time
from typing import Any

import httpx

from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.client import RETRY_STATUS
from datagen.teacher.config import TeacherConfig, safe_url
from datagen.teacher.retry import backoff_delay, retry_after_seconds


def check_endpoint(cfg: TeacherConfig, rng: random.Random | None = None) -> list[str]:
    """GET {base_url}/models with the run's key and retry policy; returns the listed model ids."""
    listing = models_listing(cfg, rng)
    # No verdict on the model name here: servers accept names they do not list (Ollama serves
    # "llama3.1" but lists "llama3.1:latest"); an unknown model is a clear 404 on the first call.
    return [m.get("id") for m in listing or []]


def models_listing(cfg: TeacherConfig, rng: random.Random | None = None) -> list[dict[str, Any]] | None:
    """The `data` of GET {base_url}/models; None for a server without a usable /models (some have none,
    and the first real request will tell). An HTML page, a refused key or a dead server raise."""
    if cfg.embedded:
        return None
    rng = rng or random.Random()
    url = safe_url(cfg.base_url, "/models")
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
            raise DatagenError(f"teacher at {url}: HTTP {resp.status_code}, the API key was refused "
                               "(check OPENAI_API_KEY)")
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
        except ValueError:
            if (page := html_snippet(resp)) is not None:
                raise not_the_api(url, cfg.base_url_source, cfg.scrub(page)) from None
            return None
        listing = data.get("data") if isinstance(data, dict) else None
        return [m for m in listing if isinstance(m, dict)] if isinstance(listing, list) else None
    raise TeacherUnavailable(f"teacher at {url}: unreachable after {cfg.max_retries} retries ({last}); "
                             f"is the server running at {safe_url(cfg.base_url)} ({cfg.base_url_source})?")


def html_snippet(resp: httpx.Response) -> str | None:
    """The first 200 characters of an HTML page on one line, or None if the body is not one. A web UI,
    a login portal or a proxy's landing page answers 200 to any path: that is a wrong URL, not a
    hiccup worth six retries."""
    text = resp.text
    head = text.lstrip()[:64].lower()
    if "text/html" not in resp.headers.get("content-type", "") and not head.startswith(("<!doctype html", "<html")):
        return None
    return " ".join(text[:200].split())


def not_the_api(url: str, source: str, page: str) -> DatagenError:
    return DatagenError(f"teacher at {url}: answered HTTP 200 with an HTML page, not the OpenAI API; check "
                        f"{source} (OpenAI-compatible servers usually end in /v1). First 200 characters: {page}")
