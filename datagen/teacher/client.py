"""The only network boundary: an async OpenAI-compatible client with cache, retries and accounting.

Methods ask `Teacher.complete(prompt, params)` and get a `Completion`; whether it came from the
cache, the embedded llama.cpp server, vLLM or OpenAI is invisible to them.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
from collections import Counter
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import httpx

from datagen.crashpoints import crash_point
from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.cache import ResponseCache, cache_key, embedded_identity, remote_identity, request_key
from datagen.teacher.config import TeacherConfig, safe_url
from datagen.teacher.budget import Budget
from datagen.teacher.embedded import MODEL_ALIAS, EmbeddedTeacher
from datagen.teacher.ratelimit import AdaptiveConcurrency, RateLimiter
from datagen.teacher.retry import backoff_delay, retry_after_seconds
from datagen.teacher.tokens import count_message_tokens, count_tokens
from datagen.teacher.transport import make_async_client
from datagen.teacher.usage import Usage

log = logging.getLogger("datagen.teacher")

# Sampling parameters we pass through; anything else in `params` is a programming error.
SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "stop", "seed", "n",
                 "response_format")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Set by a RoleTeacher around its calls: whose Usage the shared client's accounting goes to.
_ROLE_USAGE: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("datagen_role_usage", default=None)


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    key: str
    model: str


class BudgetExhausted(Exception):
    """The run's budget allows no further request; the caller finishes what it has and publishes."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidStructuredOutput(Exception):
    """The teacher did not produce JSON matching the schema after every allowed attempt."""

    def __init__(self, reason: str, text: str, attempts: int):
        super().__init__(reason)
        self.reason, self.text, self.attempts = reason, text, attempts


def response_format(style: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI and vLLM take a named json_schema; llama.cpp's server takes json_object + schema."""
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "datagen", "schema": schema, "strict": True}}
    if style == "llama_json_object":
        return {"type": "json_object", "schema": schema}
    return None


class _Retry(Exception):
    def __init__(self, cause: str, wait_s: float | None = None, detail: str = ""):
        super().__init__(cause)
        self.cause, self.wait_s, self.detail = cause, wait_s, detail


class Teacher:
    """Async teacher client. Use as `async with Teacher(cfg, cache) as t: await t.complete(...)`."""

    def __init__(self, config: TeacherConfig, cache: ResponseCache | None = None, role: str = "teacher",
                 embedded: EmbeddedTeacher | None = None, rng: random.Random | None = None,
                 budget: Budget | None = None):
        self.config = config
        self.cache = cache
        self._usage = Usage(role=role)
        self.budget = budget
        self._embedded = embedded or (EmbeddedTeacher() if config.embedded else None)
        self._base_url = config.base_url
        self._start_lock = asyncio.Lock()
        # Concurrency adapts to 429s (halve, then +1 per round trip) up to --max-concurrency; requests and
        # tokens per minute never exceed the configured or advertised (x-ratelimit-*) limits.
        self.concurrency = AdaptiveConcurrency(initial=config.max_concurrency, maximum=config.max_concurrency)
        self.limiter = RateLimiter(rpm=config.rpm, tpm=config.tpm, period_s=config.rate_window_s)
        # a cap shared with other runs (flows/shared_limit.py): anything with async ensure() and an
        # async context manager slot(); the harness sets it when the config asks for one
        self.shared = None
        # where requests are sent instead of this process's own HTTP client: anything with
        # `async post(base_url, path, body) -> (data, attempts, retries)`; the harness sets it for
        # --runner dask (flows/dask_runner.py), keeping cache, budget and accounting here
        self.remote = None
        self._batch = None
        if config.batch_api:
            from datagen.teacher.batch import BatchQueue, BatchRunner
            state = (cache.path.parent if cache is not None else Path(".")) / f"batches-{role}.sqlite"
            self._batch = BatchQueue(BatchRunner.from_teacher_config(config, state))
        self._seen: Counter = Counter()
        self._rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        self._dead: TeacherUnavailable | None = None   # the embedded server is gone for good
        # Who answers, for the cache key: found out once per Teacher (one GET /models), then reused.
        self._identity: dict[str, Any] | DatagenError | None = None
        self._identity_lock = asyncio.Lock()

    @property
    def usage(self) -> Usage:
        """This call's role's accounting: the Teacher's own, or a RoleTeacher's sharing this client."""
        return _ROLE_USAGE.get() or self._usage

    def as_role(self, role: str) -> "RoleTeacher":
        """The same endpoint, client, cache and limits for another role (judge, translator), with its
        own usage: a role without settings of its own uses the teacher's endpoint (DESIGN §3)."""
        return RoleTeacher(self, role)

    @property
    def model(self) -> str:
        if self.config.model:
            return self.config.model
        if self.config.embedded:
            return MODEL_ALIAS
        raise DatagenError("--model: required when --base-url / OPENAI_BASE_URL points at an endpoint")

    @property
    def base_url(self) -> str | None:
        return self._base_url

    async def __aenter__(self) -> "Teacher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._batch is not None:
            await self._batch.aclose()
            await self._batch.runner.aclose()
            self._batch = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    async def prepare(self) -> None:
        """What must hold before the first request: the shared limit exists on a shared Prefect server."""
        if self.shared is not None:
            await self.shared.ensure()

    async def _ensure_endpoint(self) -> httpx.AsyncClient:
        """Start the embedded server and the HTTP client on the first cache miss only."""
        if self._dead is not None:
            raise self._dead
        if self._client is not None:
            return self._client
        async with self._start_lock:
            if self._dead is not None:
                raise self._dead
            if self._client is None:
                if self._base_url is None:
                    try:
                        self._base_url = await asyncio.to_thread(self._embedded.start)
                    except TeacherUnavailable as e:
                        self._dead = e
                        raise
                self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        return make_async_client(self._base_url, headers, self.config.max_concurrency, self.config.timeout_s)

    async def _embedded_after_failure(self, client: httpx.AsyncClient) -> httpx.AsyncClient | None:
        """After a failed attempt on the embedded server: if the child is gone, restart it once (a crash
        such as SIGSEGV or the OOM killer) and return the new client, or fail every request at once
        (SIGILL, or a second crash). None: the server still runs, retry as usual."""
        async with self._start_lock:
            if self._dead is not None:
                raise self._dead
            if self._client is not client:          # another request already restarted it
                return self._client
            reason = self._embedded.exit_reason()
            if reason is None:
                return None
            if self._embedded.died_of_sigill() or self._embedded.starts >= 2:
                self._dead = self._embedded.failure("" if self._embedded.starts < 2 else " again after a restart")
                raise self._dead
            log.warning("embedded teacher: llama.cpp server %s; restarting it once (%d answers so far are "
                        "cached)", reason, self.usage.requests)
            self.usage.retries["embedded_restart"] += 1
            self._client = None
            await client.aclose()
            try:
                self._base_url = await asyncio.to_thread(self._embedded.restart)
            except TeacherUnavailable as e:
                self._dead = e
                raise
            self._client = self._new_client()
            return self._client

    def _request(self, prompt: str, params: dict[str, Any], api: str | None = None,
                 messages: list[dict[str, str]] | None = None) -> tuple[str, dict[str, Any]]:
        unknown = set(params) - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(f"unknown sampling parameters: {sorted(unknown)}")
        body: dict[str, Any] = {"model": self.model, **params}
        if messages is not None:
            body["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
            return "/chat/completions", body
        if (api or self.config.api) == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            return "/chat/completions", body
        body["prompt"] = prompt
        return "/completions", body

    @property
    def structured_style(self) -> str:
        if self.config.structured_output != "auto":
            return self.config.structured_output
        return "llama_json_object" if self.config.embedded else "json_schema"

    async def complete_json(self, prompt: str, schema: dict[str, Any], params: dict[str, Any],
                            max_invalid: int = 2, kind: str = "json", sample: int | None = None) -> tuple[Any, Completion]:
        """A JSON answer that validates against `schema`, asked as chat with `response_format`.

        An invalid answer (not JSON, wrong shape, cut by max_tokens) is asked again with a new seed, up
        to `max_invalid` more times; then InvalidStructuredOutput says why, for the caller to reject
        the item with that reason."""
        import jsonschema

        fmt = response_format(self.structured_style, schema)
        reason, text = "", ""
        for attempt in range(max_invalid + 1):
            p = dict(params)
            if fmt is not None:
                p["response_format"] = fmt
            if attempt:
                p["seed"] = int(params.get("seed") or 0) + attempt
                self.usage.retries["invalid_json_output"] += 1
            answer = await self.complete(prompt, p, kind=kind, api="chat", sample=sample)
            text = answer.text
            if answer.finish_reason == "length":
                reason = "json_truncated"
                continue
            try:
                value = json.loads(text)
                jsonschema.validate(value, schema)
            except ValueError:
                reason = "invalid_json"
                continue
            except jsonschema.ValidationError as e:
                reason = f"schema_mismatch: {e.message[:200]}"
                continue
            return value, answer
        raise InvalidStructuredOutput(reason, text, max_invalid + 1)

    async def complete(self, prompt: str, params: dict[str, Any], sample: int | None = None,
                       kind: str = "other", api: str | None = None,
                       messages: list[dict[str, str]] | None = None) -> Completion:
        """One completion for `prompt` (or, as chat, for a whole `messages` list). Identical requests in
        one run get successive sample indexes, so repeated sampling of the same prompt is not collapsed
        by the cache, yet a rerun hits it; callers that run requests concurrently pass `sample` (or a
        per-request `seed`) so the index does not depend on which request was sent first."""
        path, body = self._request(prompt, params, api, messages)
        base_key = request_key({"endpoint": path, **body})
        if sample is None:
            sample = self._seen[base_key]
            self._seen[base_key] += 1
        key = request_key({"endpoint": path, "sample": sample, **body})
        est_in = count_message_tokens(body["messages"]) if "messages" in body else count_tokens(prompt)
        mode = self.config.cache_mode
        cache = self.cache if mode != "off" else None
        # The cache row, and the batch line's custom_id, belong to one endpoint: answers from another
        # server (or another model behind the same name) are never replayed. `key` stays the request's
        # own hash, the one records cite, equal for equal requests wherever they are sent.
        row = key
        if cache is not None or self._batch is not None:
            row = cache_key(await self._cache_identity(), key)
        if cache is not None and mode == "use":
            hit = cache.get(row)
            if hit is not None:
                self.usage.record_kind(kind, est_in, hit["prompt_tokens"], hit["completion_tokens"])
                self.usage.cache_hits += 1
                self.usage.cached_prompt_tokens += hit["prompt_tokens"]
                self.usage.cached_completion_tokens += hit["completion_tokens"]
                return Completion(cached=True, key=key, **hit)
        crash_point("teacher.before_request")
        max_out = int(params.get("max_tokens") or 256)
        reservation = None
        if self.budget is not None:
            reservation = await self.budget.reserve_wait(est_in, max_out)
            if reservation is None:
                raise BudgetExhausted(self.budget.reason or "budget")
        try:
            if self._batch is not None:
                data = await self._via_batch(row, path, body, est_in + max_out)
            elif self.remote is not None:
                data = await self._post_remote(path, body, est_in + max_out)
            else:
                data = await self._post_with_retries(path, body, est_in + max_out)
        except BaseException:
            if reservation is not None:
                self.budget.release(reservation)
            raise
        crash_point("teacher.after_response")
        choice = (data.get("choices") or [{}])[0]
        if path == "/chat/completions":
            text = ((choice.get("message") or {}).get("content")) or ""
        else:
            text = choice.get("text") or ""
        if not isinstance(text, str):
            text = str(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:   # a lone surrogate escape from the server: no file could hold it
            text = text.encode("utf-8", "replace").decode("utf-8")
            log.warning("teacher answer held an unpaired surrogate escape; replaced it with '?'")
        usage = data.get("usage") or {}
        result = {
            "text": text,
            "finish_reason": choice.get("finish_reason") or "stop",
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "model": data.get("model") or self.model,
        }
        if reservation is not None:
            self.budget.settle(reservation, result["prompt_tokens"] or est_in, result["completion_tokens"])
        self.usage.record_kind(kind, est_in, result["prompt_tokens"], result["completion_tokens"])
        self.usage.requests += 1
        self.usage.prompt_tokens += result["prompt_tokens"]
        self.usage.completion_tokens += result["completion_tokens"]
        self.usage.finish_reasons[result["finish_reason"]] += 1
        if cache is not None:
            cache.put(row, result)
            crash_point("teacher.after_cache_put")
        return Completion(cached=False, key=key, **result)

    async def _cache_identity(self) -> dict[str, Any]:
        """The endpoint's identity (cache.py): the GGUF file for the embedded teacher, else host, port,
        path and what /models says about the model. Asked once; a failure is kept and re-raised, so a
        dead server is not asked again by every waiting request."""
        if isinstance(self._identity, dict):
            return self._identity
        async with self._identity_lock:
            if self._identity is None:
                try:
                    self._identity = await self._find_identity()
                except DatagenError as e:
                    self._identity = e
            if isinstance(self._identity, DatagenError):
                raise self._identity
            return self._identity

    async def _find_identity(self) -> dict[str, Any]:
        if self.config.embedded:
            from datagen.teacher import embedded
            gguf = getattr(self._embedded, "model_path", None) or embedded.smollm2_gguf()
            identity = embedded_identity(gguf)
        else:
            from datagen.teacher.preflight import models_listing
            listing = await asyncio.to_thread(models_listing, self.config)
            identity = remote_identity(self.config.base_url, self.model, listing)
        log.info("response cache: answers are kept for %s", json.dumps(identity, sort_keys=True))
        return identity

    async def _via_batch(self, key: str, path: str, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        """Through the provider's batch API; a line that failed inside the batch is sent once directly."""
        from datagen.teacher.batch import BatchRequest
        result = await self._batch.submit(BatchRequest(key, "/v1" + path, body))
        if result.ok:
            self.usage.attempts += 1
            return result.body
        self.usage.retries["batch_line_failed"] += 1
        return await self._post_with_retries(path, body, tokens)

    async def send(self, path: str, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        """One request with retries, backoff and limits, and nothing else: no cache, budget or usage by
        kind. What a Dask worker runs for a driver's Teacher (flows/dask_runner.py)."""
        return await self._post_with_retries(path, body, tokens)

    async def _post_remote(self, path: str, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        """A request another process sends (self.remote, e.g. a Dask worker, which retries it): this
        run's concurrency, rate limits and shared limit still hold here, around the whole exchange."""
        await self._ensure_endpoint()        # the embedded server runs here; workers are sent its URL
        await self.concurrency.acquire()
        try:
            reserved = await self.limiter.acquire(tokens)
            try:
                if self.shared is None:
                    data, attempts, retries = await self.remote.post(self._base_url, path, body, tokens)
                else:
                    async with self.shared.slot():
                        data, attempts, retries = await self.remote.post(self._base_url, path, body, tokens)
            except BaseException:
                self.limiter.reconcile(reserved, tokens)
                raise
            self.limiter.reconcile(reserved, int((data.get("usage") or {}).get("total_tokens") or 0) or tokens)
            self.concurrency.on_success()
            self.usage.attempts += attempts
            for cause, n in retries.items():
                self.usage.retries[cause] += n
            return data
        finally:
            self.concurrency.release()

    async def _post_with_retries(self, path: str, body: dict[str, Any], tokens: int) -> dict[str, Any]:
        client = await self._ensure_endpoint()
        cfg = self.config
        last: _Retry | None = None
        empty_retried = False
        for attempt in range(cfg.max_retries + 1):
            if self._dead is not None:
                raise self._dead
            if last is not None and last.cause != "restarted":
                wait = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
                if last.wait_s is not None:
                    wait = max(wait, last.wait_s) if last.cause == "429" else last.wait_s
                await asyncio.sleep(wait)
            if self._embedded is not None:
                client = await self._ensure_endpoint()   # the current one: a restart replaces it
            self.usage.attempts += 1
            # One concurrency slot and one rate-limit reservation per HTTP attempt: a retry is a request
            # to the server's limits too, and a 429 must be judged against the slot it was sent in.
            slot = await self.concurrency.acquire()
            try:
                reserved = await self.limiter.acquire(tokens)
                try:
                    if self.shared is None:
                        data = await self._post_once(client, path, body)
                    else:
                        async with self.shared.slot():
                            data = await self._post_once(client, path, body)
                except _Retry as r:
                    self.limiter.reconcile(reserved, 0 if r.cause in ("connection",) else tokens)
                    if r.cause == "429":
                        self.concurrency.on_rate_limited(slot)
                        if r.wait_s:
                            self.concurrency.pause_for(r.wait_s)  # the whole client backs off, not one call
                    raise
                usage = data.get("usage") or {}
                actual = int(usage.get("total_tokens") or 0)
                self.limiter.reconcile(reserved, actual or tokens)
                self.concurrency.on_success()
                if not empty_retried and _empty_answer(data):
                    # An empty 200 is usually a proxy or server hiccup; ask once more, then believe it
                    # (a model may legitimately stop at once on a stop sequence).
                    empty_retried = True
                    raise _Retry("empty", wait_s=0.0, detail="empty content")
                return data
            except _Retry as r:
                self.usage.retries[r.cause] += 1
                last = r
                log.debug("retrying %s after %s (%s)", path, r.cause, r.detail)
            finally:
                self.concurrency.release()
            if self._embedded is not None and last.cause in ("connection", "timeout", "empty", "500", "502", "503"):
                restarted = await self._embedded_after_failure(client)
                if restarted is not None:
                    client = restarted
                    last = _Retry("restarted", detail=last.detail)
        raise TeacherUnavailable(
            f"teacher at {safe_url(self._base_url, path)}: still failing after {cfg.max_retries} retries "
            f"(last: {last.cause} {last.detail})".rstrip() + f"; is the server running at {safe_url(self._base_url)} "
            f"({cfg.base_url_source})?")

    async def _post_once(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await client.post(path.lstrip("/"), json=body)
        except httpx.TimeoutException as e:
            raise _Retry("timeout", detail=type(e).__name__) from None
        except httpx.TransportError as e:
            raise _Retry("connection", detail=type(e).__name__) from None
        except RuntimeError as e:
            # The embedded server was restarted (another request saw it die) between this attempt
            # taking the client and sending on it: the old client is closed; retry on the new one.
            if client.is_closed and self._embedded is not None:
                raise _Retry("connection", detail="client replaced after an embedded restart") from None
            raise
        if "x-ratelimit-limit-requests" in resp.headers or "x-ratelimit-remaining-tokens" in resp.headers:
            self.limiter.update_from_headers(resp.headers)
        if resp.status_code == 200:
            try:
                data = resp.json()
            except ValueError:
                from datagen.teacher.preflight import html_snippet, not_the_api
                if (page := html_snippet(resp)) is not None:
                    raise not_the_api(safe_url(self._base_url, path), self.config.base_url_source,
                                      self.config.scrub(page)) from None
                raise _Retry("invalid_json", detail="response body is not JSON: "
                             + self.config.scrub(" ".join(resp.text[:200].split()))) from None
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
                raise _Retry("invalid_json", detail="response has no choices")
            return data
        if resp.status_code in RETRY_STATUS:
            cause = "429" if resp.status_code == 429 else str(resp.status_code)
            raise _Retry(cause, wait_s=retry_after_seconds(resp.headers), detail=f"HTTP {resp.status_code}")
        url = safe_url(self._base_url, path)
        message = self.config.scrub(_error_message(resp))
        if resp.status_code in (401, 403):
            raise DatagenError(f"teacher at {url}: HTTP {resp.status_code}, the API key was refused "
                               f"(check OPENAI_API_KEY): {message}")
        if resp.status_code == 404:
            raise DatagenError(f"teacher at {url}: HTTP 404 for model '{body.get('model')}' "
                               f"({self.config.where('model')}): unknown model or endpoint (check "
                               f"{self.config.base_url_source}: does the server speak the OpenAI API under /v1?): "
                               f"{message}")
        raise DatagenError(f"teacher at {url}: HTTP {resp.status_code}: {message}")


class RoleTeacher:
    """Another role (judge, translator) on a Teacher's endpoint: same client, cache, concurrency and
    budget, its own Usage. The role's usage is chosen per call through a context variable, so calls of
    both roles may be in flight at once."""

    def __init__(self, base: Teacher, role: str):
        self.base = base
        self.usage = Usage(role=role)

    @property
    def model(self) -> str:
        return self.base.model

    @property
    def config(self) -> TeacherConfig:
        return self.base.config

    @property
    def structured_style(self) -> str:
        return self.base.structured_style

    async def complete(self, *args: Any, **kwargs: Any) -> Completion:
        token = _ROLE_USAGE.set(self.usage)
        try:
            return await self.base.complete(*args, **kwargs)
        finally:
            _ROLE_USAGE.reset(token)

    async def complete_json(self, *args: Any, **kwargs: Any) -> tuple[Any, Completion]:
        token = _ROLE_USAGE.set(self.usage)
        try:
            return await self.base.complete_json(*args, **kwargs)
        finally:
            _ROLE_USAGE.reset(token)

    async def aclose(self) -> None:   # the base Teacher owns the connection
        return None


def _empty_answer(data: dict[str, Any]) -> bool:
    choice = data["choices"][0] if isinstance(data["choices"][0], dict) else {}
    if choice.get("finish_reason") == "length":
        return False
    text = choice.get("text")
    if text is None:
        text = (choice.get("message") or {}).get("content")
    return not text


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return str(err.get("message", ""))[:300]
        return str(err)[:300]
    except Exception:
        return resp.text[:300].replace("\n", " ")
