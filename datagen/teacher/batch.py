"""OpenAI-style Batch API (`--batch-api`): submit, poll, collect, and resume by batch id after a restart.

Why a batch path at all: for a non-interactive run, the Batch API answers the same requests at about
half the price and outside the interactive rate limits, at the cost of latency (minutes to 24 h). That
latency is exactly why a run must survive a restart without paying twice: once a batch exists on the
server, it is recorded in a small SQLite state file, and a new process that asks for the same requests
(same custom_ids, i.e. the same response-cache keys) polls and collects that batch instead of
submitting it again.

Lifecycle of one batch, and what the state file knows at each step:

1. a row `submitting` with our own random token and every custom_id it covers (no network yet);
2. the JSONL input file is uploaded (purpose "batch");
3. the batch is created with `metadata.datagen_token = token`; the row becomes `pending` with the
   batch id — before we wait on anything;
4. polled until a terminal status; the output (and error) file is downloaded, successful bodies are
   stored in `batch_results`, and the row becomes `done` in the same transaction.

The token covers the one window the batch id cannot: the create call reached the server but its
answer was lost (connection reset, 5xx from a proxy after the fact, the process killed). Before a
create is retried, and when a later process finds a row still `submitting`, the runner lists the
account's recent batches and adopts the one carrying its token; only if none does are the requests
submitted again. Without this, a flaky network would double-bill whole batches.

Successful bodies are kept in `batch_results` (not only returned) because the caller caches them
*after* `run()` returns: a crash in between must not turn a collected batch into a second one.
Failed lines are not kept, so the next run submits them again (or the caller retries them one by one
through the interactive endpoint). Nothing secret is ever written: the API key lives only in the
client's Authorization header; the state records the endpoint's host:port/path for resume matching.

One runner per state file at a time: two live processes sharing one would each submit what the other
is still submitting.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from datagen.crashpoints import crash_point
from datagen.teacher.retry import backoff_delay, retry_after_seconds
from datagen.errors import DatagenError, TeacherUnavailable
from datagen.teacher.cache import endpoint_address

log = logging.getLogger("datagen.teacher.batch")

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Statuses worth another attempt on the files/batches endpoints; everything else 4xx is the user's to fix.
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class BatchRequest(NamedTuple):
    """One line of a batch. `custom_id` is the response-cache key (SHA-256 of the canonical request),
    which is what makes a rerun find the batch its requests already went into."""

    custom_id: str
    endpoint: str   # "/v1/chat/completions" or "/v1/completions" ("/chat/completions" is accepted too)
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """What one request came back as. A typed pair rather than a bare dict, so that a failed line can
    never be mistaken for a body: `body` is the JSON the interactive endpoint would have returned,
    `error` is `{"status_code", "code", "message"}` when the line failed inside the batch."""

    custom_id: str
    body: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.body is not None


@dataclass
class BatchConfig:
    max_lines: int = 50_000                 # OpenAI's per-batch limit
    max_bytes: int = 100 * 1024 * 1024      # per input file; OpenAI accepts up to 200 MB
    completion_window: str = "24h"
    poll_interval_s: float = 5.0            # first wait between polls ...
    poll_max_s: float = 120.0               # ... growing by poll_backoff up to this
    poll_backoff: float = 1.5
    max_retries: int = 6                    # per files/batches call, on 429/5xx/connection errors
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 300.0                # read timeout; uploads and downloads can be large
    lookup_pages: int = 20                  # pages of GET /v1/batches searched for a lost create


def normalize_endpoint(endpoint: str) -> str:
    """The batch line `url` is always the /v1 path, whatever prefix the base URL carries."""
    path = "/" + endpoint.strip("/")
    if not path.startswith("/v1/"):
        path = "/v1" + path
    if path not in ENDPOINTS:
        raise ValueError(f"batch endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
    return path


def _endpoint_id(base_url: str) -> str:
    """host:port/path of the API, never its credentials: batches only resume against the server
    (and account path) they were created on."""
    return endpoint_address(base_url)


class _State:
    """The SQLite state file. Table names carry a `batch_` prefix so it may share a file with the
    response cache."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=60)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: a recorded batch id that vanishes in a power cut costs a whole batch.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS batch_batches (
                token TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, url TEXT NOT NULL,
                state TEXT NOT NULL, batch_id TEXT, input_file_id TEXT, api_status TEXT, error TEXT,
                lines INTEGER NOT NULL, created REAL NOT NULL, finished REAL);
            CREATE TABLE IF NOT EXISTS batch_items (
                token TEXT NOT NULL, custom_id TEXT NOT NULL, PRIMARY KEY (token, custom_id));
            CREATE TABLE IF NOT EXISTS batch_results (
                custom_id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, body TEXT NOT NULL);
        """)

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def add(self, token: str, endpoint_id: str, url: str, custom_ids: list[str]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO batch_batches (token, endpoint_id, url, state, lines, created) "
                       "VALUES (?, ?, ?, 'submitting', ?, ?)", (token, endpoint_id, url, len(custom_ids), time.time()))
            db.executemany("INSERT INTO batch_items (token, custom_id) VALUES (?, ?)",
                           ((token, c) for c in custom_ids))
        self._tx(write)

    def update(self, token: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._tx(lambda db: db.execute(f"UPDATE batch_batches SET {cols} WHERE token = ?", (*fields.values(), token)))

    def open_rows(self, endpoint_id: str) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute("SELECT * FROM batch_batches WHERE endpoint_id = ? AND state IN "
                                    "('submitting', 'pending') ORDER BY created", (endpoint_id,)).fetchall()

    def row(self, token: str) -> sqlite3.Row:
        with self._lock:
            return self._db.execute("SELECT * FROM batch_batches WHERE token = ?", (token,)).fetchone()

    def items(self, token: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT custom_id FROM batch_items WHERE token = ?", (token,))]

    def finish(self, token: str, batch_id: str, bodies: dict[str, dict], state: str, api_status: str,
               error: str | None = None) -> None:
        """Store what succeeded and close the row in one transaction: either both happened or neither."""
        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO batch_results (custom_id, batch_id, body) VALUES (?, ?, ?)",
                           ((c, batch_id, json.dumps(b, ensure_ascii=False)) for c, b in bodies.items()))
            db.execute("UPDATE batch_batches SET state = ?, api_status = ?, error = ?, finished = ? WHERE token = ?",
                       (state, api_status, error, time.time(), token))
        self._tx(write)

    def results(self, custom_ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(custom_ids), 900):  # under SQLite's bound-parameter limit
                part = custom_ids[i:i + 900]
                q = f"SELECT custom_id, body FROM batch_results WHERE custom_id IN ({','.join('?' * len(part))})"
                out.update((c, json.loads(b)) for c, b in self._db.execute(q, part))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


class BatchRunner:
    """Runs requests through the Batch API; use as `async with BatchRunner(...) as r: await r.run(reqs)`.

    `client`, if given, must already carry the base URL and the Authorization header (the Teacher's
    client does); otherwise the runner builds its own from `base_url` and `api_key` and closes it.
    `on_submitted(batch_id, custom_ids)` is called once a new batch is recorded in the state file; it
    exists for progress reporting and for tests that simulate a crash at that exact moment.
    `reuse_results=False` (the Teacher's --refresh and --no-cache) ignores answers collected by earlier
    runs, which are a cache like any other; batches still pending on the server are still adopted, so a
    restart never pays for a batch twice.
    """

    def __init__(self, base_url: str, state_path: str | Path, *, api_key: str | None = None,
                 client: httpx.AsyncClient | None = None, config: BatchConfig | None = None,
                 on_submitted: Callable[[str, list[str]], None] | None = None, rng: random.Random | None = None,
                 reuse_results: bool = True):
        self.config = config or BatchConfig()
        self.reuse_results = reuse_results
        self.base_url = base_url.rstrip("/")
        self.state_path = Path(state_path)
        self._endpoint_id = _endpoint_id(self.base_url)
        self._host = httpx.URL(self.base_url).host
        self._api_path = httpx.URL(self.base_url).path.rstrip("/")
        self._api_key = api_key  # only to scrub it from server messages; never stored
        self._own_client = client is None
        if client is None:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                       timeout=httpx.Timeout(self.config.timeout_s, connect=10.0))
        self._client = client
        self._state = _State(state_path)
        self._on_submitted = on_submitted
        self._rng = rng or random.Random()
        self._decide = asyncio.Lock()
        self._live: dict[str, asyncio.Task] = {}        # token -> the task polling and collecting it
        self._live_ids: dict[str, set[str]] = {}        # token -> custom_ids it covers
        self._holders: dict[asyncio.Task, int] = {}     # how many run() calls wait on each task

    @classmethod
    def from_teacher_config(cls, cfg: Any, state_path: str | Path, **kw: Any) -> "BatchRunner":
        """Built from a TeacherConfig; the embedded llama.cpp teacher has no Batch API to talk to."""
        if not cfg.base_url:
            raise DatagenError("--batch-api: needs --base-url / OPENAI_BASE_URL pointing at an endpoint with the "
                               "OpenAI Batch API (the embedded llama.cpp teacher has none)")
        config = kw.pop("config", None) or BatchConfig(max_retries=cfg.max_retries, backoff_base_s=cfg.backoff_base_s,
                                                       backoff_max_s=cfg.backoff_max_s,
                                                       poll_interval_s=getattr(cfg, "batch_poll_s", 5.0))
        kw.setdefault("reuse_results", getattr(cfg, "cache_mode", "use") == "use")
        return cls(cfg.base_url, state_path, api_key=cfg.api_key, config=config, **kw)

    async def __aenter__(self) -> "BatchRunner":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        tasks = list(self._live.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()
        self._state.close()

    # ------------------------------------------------------------------ the one entry point

    async def run(self, requests: Sequence[BatchRequest]) -> list[BatchResult]:
        """One BatchResult per request, in the order given. Answers already collected cost nothing;
        requests covered by a recorded, unfinished batch wait for that batch; the rest are submitted
        in as few batches as the line and byte limits allow (one endpoint and one model per batch)."""
        unique: dict[str, BatchRequest] = {}
        for r in requests:
            r = BatchRequest(r.custom_id, normalize_endpoint(r.endpoint), r.body)
            seen = unique.setdefault(r.custom_id, r)
            if seen.body != r.body or seen.endpoint != r.endpoint:
                raise ValueError(f"custom_id {r.custom_id} is used for two different requests")
        waiting: list[asyncio.Task] = []
        try:
            # One run() at a time decides what to submit, so two overlapping calls (two flushes of a
            # BatchQueue) never submit the same request twice nor take each other's half-made batch
            # for an orphan; the waiting itself is shared and concurrent.
            async with self._decide:
                stored = self._state.results(list(unique)) if self.reuse_results else {}
                results: dict[str, BatchResult] = {c: BatchResult(c, body=b) for c, b in stored.items()}
                todo = {c: r for c, r in unique.items() if c not in results}
                live = {t: task for t, task in self._live.items() if not task.cancelled()}
                for token, task in live.items():
                    if self._live_ids[token] & todo.keys():
                        waiting.append(self._hold(task))
                        todo = {c: r for c, r in todo.items() if c not in self._live_ids[token]}
                for row in self._state.open_rows(self._endpoint_id) if todo else ():
                    ids = set(self._state.items(row["token"]))
                    if row["token"] in live or not ids & todo.keys():
                        continue
                    if row["state"] == "submitting" and not await self._adopt(row):
                        continue  # never created: its requests go into a new batch below
                    log.info("resuming batch %s (%d requests) recorded in %s",
                             self._state.row(row["token"])["batch_id"], len(ids), self.state_path)
                    waiting.append(self._hold(self._start(row["token"], ids)))
                    todo = {c: r for c, r in todo.items() if c not in ids}
                for chunk in self._chunks(list(todo.values())):
                    token = await self._submit(chunk)
                    waiting.append(self._hold(self._start(token, set(chunk[1]))))
            for got in await _all_or_first_error(waiting):
                results.update(got)
        finally:
            await self._release(waiting)
        missing = {"status_code": None, "code": "missing", "message": "no answer for this custom_id in the batch"}
        return [results.get(r.custom_id) or BatchResult(r.custom_id, error=missing) for r in requests]

    def _start(self, token: str, ids: set[str]) -> asyncio.Task:
        task = asyncio.create_task(self._await_batch(token))
        self._live[token], self._live_ids[token] = task, ids

        def forget(t: asyncio.Task) -> None:
            if self._live.get(token) is t:
                del self._live[token], self._live_ids[token]
        task.add_done_callback(forget)
        return task

    def _hold(self, task: asyncio.Task) -> asyncio.Task:
        self._holders[task] = self._holders.get(task, 0) + 1
        return task

    async def _release(self, tasks: list[asyncio.Task]) -> None:
        """Stop polling batches nobody waits for any more (a failed or cancelled run); they stay
        `pending` in the state file and resume on the next run."""
        orphans = []
        for t in tasks:
            self._holders[t] -= 1
            if not self._holders[t]:
                del self._holders[t]
                if not t.done():
                    t.cancel()
                    orphans.append(t)
        if orphans:
            await asyncio.gather(*orphans, return_exceptions=True)

    # ------------------------------------------------------------------ submitting

    def _chunks(self, requests: list[BatchRequest]) -> list[tuple[str, list[str], bytes]]:
        """(url, custom_ids, JSONL bytes) per batch: grouped by endpoint and model (a batch file may
        name only one of each), then cut at max_lines / max_bytes in request order."""
        groups: dict[tuple[str, str], list[BatchRequest]] = {}
        for r in requests:
            groups.setdefault((r.endpoint, str(r.body.get("model"))), []).append(r)
        out = []
        for (url, _model), reqs in groups.items():
            ids: list[str] = []
            lines: list[bytes] = []
            size = 0
            for r in reqs:
                line = json.dumps({"custom_id": r.custom_id, "method": "POST", "url": url, "body": r.body},
                                  ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
                if len(line) > self.config.max_bytes:
                    raise DatagenError(f"--batch-max-bytes: request {r.custom_id} alone is {len(line)} bytes, over "
                                       f"the limit of {self.config.max_bytes}")
                if ids and (len(ids) >= self.config.max_lines or size + len(line) > self.config.max_bytes):
                    out.append((url, ids, b"".join(lines)))
                    ids, lines, size = [], [], 0
                ids.append(r.custom_id)
                lines.append(line)
                size += len(line)
            if ids:
                out.append((url, ids, b"".join(lines)))
        return out

    async def _submit(self, chunk: tuple[str, list[str], bytes]) -> str:
        url, ids, content = chunk
        token = uuid.uuid4().hex
        self._state.add(token, self._endpoint_id, url, ids)

        async def created_meanwhile() -> dict | None:
            return await self._find_by_token(token, self._state.row(token)["created"])

        try:
            uploaded = await self._call("POST", "files", data={"purpose": "batch"},
                                        files={"file": (f"datagen-{token}.jsonl", content, "application/jsonl")})
            self._state.update(token, input_file_id=uploaded["id"])
            batch = await self._call("POST", "batches", recover=created_meanwhile,
                                     json={"input_file_id": uploaded["id"], "endpoint": url,
                                           "completion_window": self.config.completion_window,
                                           "metadata": {"datagen_token": token}})
        except DatagenError as e:
            # Refused outright (401, 400, ...): certainly no batch. Still failing after retries: maybe one,
            # so the row stays `submitting` and the next run looks for it.
            if not isinstance(e, TeacherUnavailable):
                self._state.update(token, state="abandoned", error=str(e)[:300], finished=time.time())
            raise
        crash_point("batch.created")
        self._state.update(token, batch_id=batch["id"], state="pending", api_status=batch.get("status"))
        log.info("submitted batch %s: %d requests to %s (state in %s)", batch["id"], len(ids), url, self.state_path)
        crash_point("batch.submitted")
        if self._on_submitted is not None:
            self._on_submitted(batch["id"], list(ids))
        return token

    async def _adopt(self, row: sqlite3.Row) -> bool:
        """A row left `submitting` by a dead process: find the batch it may have created, or give up on it."""
        batch = await self._find_by_token(row["token"], row["created"])
        if batch is None:
            self._state.update(row["token"], state="abandoned", finished=time.time())
            log.info("no batch was created for an interrupted submission; submitting its requests again")
            return False
        self._state.update(row["token"], batch_id=batch["id"], state="pending", api_status=batch.get("status"))
        return True

    async def _find_by_token(self, token: str, since: float) -> dict | None:
        """The batch whose metadata carries `token`, searching newest first back to `since` (with an
        hour of slack for clock skew)."""
        params: dict[str, Any] = {"limit": 100}
        for _ in range(self.config.lookup_pages):
            try:
                page = await self._call("GET", "batches", params=params)
            except TeacherUnavailable:
                raise
            except DatagenError as e:  # a server without the list endpoint: we cannot know, so resubmit
                log.warning("cannot look for an interrupted batch submission: %s", e)
                return None
            data = page.get("data") or []
            for b in data:
                if (b.get("metadata") or {}).get("datagen_token") == token:
                    return b
            if not data or not page.get("has_more") or min(int(b.get("created_at") or 0) for b in data) < since - 3600:
                return None
            params["after"] = data[-1]["id"]
        return None

    # ------------------------------------------------------------------ waiting and collecting

    async def _await_batch(self, token: str) -> dict[str, BatchResult]:
        batch_id = self._state.row(token)["batch_id"]
        delay, last = self.config.poll_interval_s, None
        while True:
            batch = await self._call("GET", f"batches/{batch_id}")
            status = batch.get("status")
            if status != last:
                counts = batch.get("request_counts") or {}
                log.info("batch %s: %s (%s/%s done, %s failed)", batch_id, status, counts.get("completed", 0),
                         counts.get("total", "?"), counts.get("failed", 0))
                self._state.update(token, api_status=status)
                last = status
            if status in TERMINAL:
                break
            await asyncio.sleep(delay)
            delay = min(delay * self.config.poll_backoff, self.config.poll_max_s)
        return await self._collect(token, batch)

    async def _collect(self, token: str, batch: dict) -> dict[str, BatchResult]:
        batch_id, status = batch["id"], batch["status"]
        if status == "failed":
            message = _batch_errors(batch) or "no reason given"
            self._state.finish(token, batch_id, {}, "failed", status, message)
            raise DatagenError(f"batch {batch_id} at {self._host}: status failed: {self._scrub(message)}")
        lines: list[dict] = []
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                content = await self._call("GET", f"files/{batch[key]}/content", raw=True)
                lines.extend(_jsonl(content, batch_id))
        got: dict[str, BatchResult] = {}
        for line in lines:
            got[line["custom_id"]] = _line_result(line)
        bodies = {c: r.body for c, r in got.items() if r.ok}
        if status != "completed":
            # expired / cancelled: keep what did finish, so a rerun submits only the rest.
            message = _batch_errors(batch) or f"{len(bodies)} of {self._state.row(token)['lines']} requests finished"
            self._state.finish(token, batch_id, bodies, "failed", status, message)
            raise DatagenError(f"batch {batch_id} at {self._host}: status {status}: {self._scrub(message)}; "
                               "finished requests are kept, rerun to submit the rest")
        self._state.finish(token, batch_id, bodies, "done", status)
        crash_point("batch.collected")
        failed = len(got) - len(bodies)
        if failed:
            log.warning("batch %s: %d requests failed inside the batch", batch_id, failed)
        return got

    # ------------------------------------------------------------------ HTTP with retries

    async def _call(self, method: str, path: str, *, raw: bool = False,
                    recover: Callable[[], Awaitable[dict | None]] | None = None, **kw: Any) -> Any:
        """One files/batches call, retried on 429/5xx/connection errors. `recover` is asked before each
        retry whether the failed attempt took effect anyway (a created batch whose answer was lost)."""
        cfg, cause, wait_hint = self.config, "", None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                wait = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
                await asyncio.sleep(max(wait, wait_hint) if wait_hint is not None else wait)
                if recover is not None and (found := await recover()) is not None:
                    return found
            try:
                resp = await self._client.request(method, path, **kw)
            except httpx.TransportError as e:
                cause, wait_hint = type(e).__name__, None
                log.debug("retrying %s %s after %s", method, path, cause)
                continue
            if resp.status_code < 300:
                if raw:
                    return resp.content
                try:
                    return resp.json()
                except ValueError:
                    cause, wait_hint = "invalid JSON", None
                    continue
            if resp.status_code in RETRY_STATUS:
                cause, wait_hint = f"HTTP {resp.status_code}", retry_after_seconds(resp.headers)
                log.debug("retrying %s %s after %s", method, path, cause)
                continue
            raise self._refused(resp, method, path)
        raise TeacherUnavailable(f"batch API at {self._host}: {method} {self._api_path}/{path} still failing after "
                                 f"{cfg.max_retries} retries (last: {cause}); rerun to resume from {self.state_path}")

    def _refused(self, resp: httpx.Response, method: str, path: str) -> DatagenError:
        where = f"batch API at {self._host}: HTTP {resp.status_code} on {method} {self._api_path}/{path}"
        message = self._scrub(_error_message(resp))
        if resp.status_code in (401, 403):
            return DatagenError(f"{where}: the API key was refused (check OPENAI_API_KEY): {message}")
        if resp.status_code == 404:
            return DatagenError(f"{where}: not found (does this endpoint offer the OpenAI Batch API, and is "
                                f"{self.state_path} from this account?): {message}")
        return DatagenError(f"{where}: {message}")

    def _scrub(self, text: str) -> str:
        """Servers sometimes echo the presented key in their messages; it must not reach a log."""
        return text.replace(self._api_key, "***") if self._api_key else text


class BatchQueue:
    """Turns one-at-a-time `submit()` calls into batches: what Teacher.complete awaits in batch mode.

    Methods fire a whole round with asyncio.gather, so its requests arrive within milliseconds; the
    queue flushes when `linger_s` passes without a new request, when `max_wait_s` has passed since the
    oldest waiting one (a steady trickle must not postpone a batch forever), or at max_lines.
    """

    def __init__(self, runner: BatchRunner, linger_s: float = 0.5, max_wait_s: float = 10.0):
        self.runner, self.linger_s, self.max_wait_s = runner, linger_s, max_wait_s
        self._waiting: list[tuple[BatchRequest, asyncio.Future]] = []
        self._first = self._last = 0.0
        self._timer: asyncio.Task | None = None
        self._flushes: set[asyncio.Task] = set()

    async def submit(self, request: BatchRequest) -> BatchResult:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        now = loop.time()
        if not self._waiting:
            self._first = now
        self._last = now
        self._waiting.append((request, fut))
        if len(self._waiting) >= self.runner.config.max_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._linger())
        return await fut

    def flush(self) -> None:
        """Send everything waiting now."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        if self._waiting:
            items, self._waiting = self._waiting, []
            task = asyncio.create_task(self._run(items))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def aclose(self) -> None:
        self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        while (due := min(self._last + self.linger_s, self._first + self.max_wait_s)) > loop.time():
            await asyncio.sleep(due - loop.time())
        self.flush()

    async def _run(self, items: list[tuple[BatchRequest, asyncio.Future]]) -> None:
        try:
            results = await self.runner.run([r for r, _ in items])
        except Exception as e:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(e)
            return
        except BaseException:
            for _, fut in items:
                fut.cancel()
            raise
        for (_, fut), res in zip(items, results):
            if not fut.done():
                fut.set_result(res)


# ---------------------------------------------------------------------- helpers

async def _all_or_first_error(tasks: list[asyncio.Task]) -> list[Any]:
    """Like gather, but the first failure is raised at once (the caller cancels the rest, which stay
    recorded as pending and resume on the next run) instead of after every other batch finishes."""
    if not tasks:
        return []
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for t in tasks:
        if t in done and not t.cancelled() and t.exception() is not None:
            raise t.exception()
    return [t.result() for t in tasks]


def _jsonl(content: bytes, batch_id: str) -> list[dict]:
    out = []
    for no, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            log.warning("batch %s: output line %d is not JSON; its request counts as missing", batch_id, no)
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            out.append(line)
    return out


def _line_result(line: dict) -> BatchResult:
    """A body only for a 200 that looks like what the interactive endpoint returns (a non-empty
    `choices`); anything else is an error entry the caller can retry interactively."""
    cid = line["custom_id"]
    resp = line.get("response") if isinstance(line.get("response"), dict) else {}
    status, body, err = resp.get("status_code"), resp.get("body"), line.get("error")
    if status == 200 and not err and isinstance(body, dict) and isinstance(body.get("choices"), list) \
            and body["choices"]:
        return BatchResult(cid, body=body)
    detail = err if isinstance(err, dict) else body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        detail = {}
    message = str(detail.get("message") or (f"HTTP {status}" if status != 200 else "response has no choices"))
    return BatchResult(cid, error={"status_code": status, "code": detail.get("code"), "message": message[:300]})


def _batch_errors(batch: dict) -> str:
    data = ((batch.get("errors") or {}).get("data") or []) if isinstance(batch.get("errors"), dict) else []
    parts = [str(e.get("message") or e.get("code")) for e in data[:3] if isinstance(e, dict)]
    more = f" (+{len(data) - 3} more)" if len(data) > 3 else ""
    return "; ".join(parts) + more


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        return str(err.get("message", "") if isinstance(err, dict) else err)[:300]
    except Exception:
        return resp.text[:300].replace("\n", " ")
