#!/usr/bin/env python3
"""A scripted, OpenAI-compatible HTTP peer for tests and benchmarks.

This is a *protocol* peer, not a model: it answers with real OpenAI response
shapes and deterministic filler text, and it injects faults (429, 5xx, hangs,
connection resets, broken JSON, empty or truncated completions) on demand, so
the teacher client's retry, timeout and bookkeeping logic can be exercised
without a real backend. Nothing it generates is evidence that generation works.

Why hand-written HTTP on bare asyncio streams: the stub must not become the
bottleneck of a throughput benchmark on a 2-core box, and every framework layer
(routing, middleware, validation) costs CPU per request. The parser supports
exactly what HTTP/1.1 clients such as httpx send: keep-alive, Content-Length and
chunked request bodies, pipelining.

Two ways to run it:

    with StubServer(StubConfig(latency_s=0.1, rate_429=0.2)) as srv:
        client = httpx.Client(base_url=srv.base_url)   # http://127.0.0.1:PORT/v1
        ...
        assert srv.stats["faults"]["429"] > 0

    python tests/openai_stub.py --port 0 --latency 1.0 --rate-429 0.1
    # prints "READY http://127.0.0.1:PORT/v1", serves until SIGTERM;
    # GET /stats returns the counters as JSON.

The subprocess form is the one for throughput benchmarks: the server then has
its own interpreter and GIL instead of competing with the client under test.

Endpoints: POST /v1/chat/completions, POST /v1/completions (the only ones that
are faulted or delayed), GET /v1/models[/{id}], GET /health; batch API:
POST/GET /v1/files, GET/DELETE /v1/files/{id}, GET /v1/files/{id}/content,
POST/GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.
Admin (never logged or counted): GET /stats, GET /stub/requests,
POST /stub/config (JSON of StubConfig fields to change), POST /stub/reset.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import inspect
import itertools
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["FAULT_KINDS", "StubApp", "StubConfig", "StubServer", "default_responder", "main"]

# Order matters: it is the order in which a uniform draw is bucketed into faults,
# so changing it would change which requests a given seed faults.
FAULT_KINDS = ("429", "500", "502", "503", "timeout", "reset", "invalid_json", "empty", "length")

Responder = Callable[[str, dict], str | list | Awaitable[str | list]]


@dataclass
class StubConfig:
    """Behaviour of the stub. Fields may be changed while it runs (the next request sees them)."""

    # Fixed delay before a generation endpoint answers, plus uniform jitter in [0, latency_jitter_s].
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0

    # Probability of each fault per generation request; their sum must be <= 1.
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_timeout: float = 0.0       # hold the request timeout_hang_s without answering, then close
    rate_reset: float = 0.0         # send headers and half the body, then RST the connection
    rate_invalid_json: float = 0.0  # 200 with a truncated JSON body
    rate_empty: float = 0.0         # 200 with empty content
    rate_length: float = 0.0        # 200 with half the content and finish_reason "length"

    retry_after_s: float = 1.0      # sent on 429 as Retry-After (seconds) and retry-after-ms
    timeout_hang_s: float = 30.0    # should exceed the client's read timeout
    seed: int = 0

    # 0: every attempt is faulted independently at the rates above (seeded, but
    # the sequence depends on arrival order). k > 0: a request (identified by
    # the hash of its body) is picked as faulty with probability sum(rates),
    # independent of arrival order; a faulty request fails its first k attempts
    # and succeeds from then on. This makes "run with faults" and "run without"
    # comparable record for record.
    faults_per_request_key: int = 0

    # Reject /v1/* requests whose Authorization is not "Bearer <key>" with 401.
    require_api_key: str | None = None
    # Served by /v1/models; if set, requests for any other model get 404 (unless any_model).
    models: list[str] | None = None
    # Like llama.cpp: answer whatever model name is asked for, whatever /v1/models lists.
    any_model: bool = False
    # Extra fields of every /v1/models entry, e.g. {"meta": {"n_params": 1}} (llama.cpp) or
    # {"root": "/ckpt/a"} (vLLM); and `created` stamped with the current time, as vLLM and llama.cpp do.
    model_fields: dict | None = None
    models_created_now: bool = False
    # Status of GET /v1/models[/{id}]: 404 plays a server without the endpoint.
    models_status: int = 200
    # If set, every request (but the admin paths) is answered 200 text/html with this body: a web UI, login portal or
    # proxy landing page where the API was expected.
    html_page: str | None = None

    # OpenAI-style x-ratelimit-* headers over a fixed 60 s window; with
    # ratelimit_enforce, exhausting either budget yields 429 until the window rolls.
    ratelimit_headers: bool = False
    ratelimit_requests: int = 10_000
    ratelimit_tokens: int = 2_000_000
    ratelimit_enforce: bool = False

    # Batch API: a batch completes this long after creation; batch_error_rate
    # fails individual lines (chosen by hash of custom_id) with a 500 in the error file.
    batch_delay_s: float = 0.5
    batch_error_rate: float = 0.0

    # Request log kept for assertions: the last log_max_requests requests, bodies
    # cut at log_max_body_chars (raise it when asserting that something is absent).
    log_max_requests: int = 10_000
    log_max_body_chars: int = 8192

    # responder(kind, body) -> str | list[str] (may be async); kind is "chat" or
    # "completion". A str is used for every choice; a list gives the choices as-is.
    responder: Responder | None = None

    def fault_rates(self) -> list[tuple[str, float]]:
        rates = [(k, float(getattr(self, "rate_" + k))) for k in FAULT_KINDS]
        for kind, r in rates:
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"rate_{kind}={r} is outside [0, 1]")
        if sum(r for _, r in rates) > 1.0 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        return rates


# --------------------------------------------------------------------------- content

_TOPICS = (
    "autumn leaves", "recursion", "the ocean tides", "photosynthesis", "compound interest", "volcanoes",
    "the printing press", "binary search", "honeybees", "climate adaptation", "jazz improvisation",
    "the water cycle", "supply and demand", "black holes", "public libraries", "sourdough bread",
    "electric cars", "the Roman roads", "sleep hygiene", "prime numbers", "urban gardening",
    "the immune system", "chess openings", "glaciers", "password managers", "the Silk Road",
    "plate tectonics", "remote work", "origami", "vaccines", "lighthouses", "the stock market",
    "coral reefs", "time zones", "bicycle maintenance", "renewable energy", "ancient Egypt",
    "machine translation", "migratory birds", "rainforests", "the human heart", "tea ceremonies",
    "solar eclipses", "open-source software", "desert ecosystems", "the Fibonacci sequence",
    "public speaking", "earthquakes", "minimalism", "the periodic table", "street food",
    "spaced repetition", "hash tables", "wind turbines", "the French Revolution", "mushrooms",
    "budget planning", "sea turtles", "the telescope", "vegetable fermentation", "robotics",
    "cloud formation", "board games", "the Olympic Games", "data privacy", "bridges",
)
_TASKS = (
    "Write a short poem about {t}", "Explain {t} to a ten-year-old", "List three surprising facts about {t}",
    "Summarize the history of {t}", "Give a real-world example of {t}", "Compose a tweet announcing {t}",
    "Describe the pros and cons of {t}", "Write a haiku inspired by {t}", "Create a quiz question about {t}",
    "Draft an email inviting a friend to learn about {t}", "Compare {t} with {u}",
    "Outline a lesson plan on {t}", "Write a product description themed around {t}",
    "Suggest five names for a podcast about {t}", "Classify the sentiment of a review mentioning {t}",
    "Tell a two-line story involving {t}", "Propose a research question about {t}",
    "Explain a common misconception about {t}", "Write a limerick about {t}",
    "Describe how {t} might change in fifty years",
)
_CONSTRAINTS = (
    "", "", "", " in exactly three sentences", " using a simple analogy", " for a busy executive",
    " without using the letter z", " in the style of a news report", " for a children's book",
    " in under fifty words", " as a numbered list", " with a humorous tone", " for a museum placard",
    " from the perspective of {u}", " and mention {u}",
)
_SENTENCES = (
    "{T} is best understood by starting from a concrete example.",
    "A common mistake is to treat {t} and {u} as the same thing.",
    "Historically, interest in {t} grew alongside advances in {u}.",
    "In practice, {t} rewards patience and careful observation.",
    "One useful analogy compares {t} to {u}.",
    "Experts disagree on details, but the core idea of {t} is simple.",
    "For beginners, the first step is to notice where {t} shows up in daily life.",
    "The main trade-off is between speed and accuracy.",
    "Studies of {u} offer a helpful contrast.",
    "Keep the explanation short, concrete and honest about uncertainty.",
    "{T} also has a surprising connection to {u}.",
    "A small experiment at home can illustrate the principle.",
)


# Fields that only cut or multiply the output: like a temperature-0 model, the
# stub keeps the text the same when they change, so a stop sequence or
# max_tokens truncates the very text the client would otherwise have seen.
_NON_CONTENT_FIELDS = frozenset({"stop", "max_tokens", "max_completion_tokens", "n", "user", "stream"})


def _rng_for(body: dict, index: int) -> random.Random:
    # Content depends only on the request (and choice index), never on the
    # fault seed, so a faulty run and a clean run produce the same text.
    core = {k: v for k, v in body.items() if k not in _NON_CONTENT_FIELDS}
    return random.Random(_digest(core) + ":" + str(index))


def _instruction(rng: random.Random) -> str:
    t, u = rng.sample(_TOPICS, 2)
    text = rng.choice(_TASKS) + rng.choice(_CONSTRAINTS) + "."
    return text.format(t=t, u=u)


def _paragraph(rng: random.Random) -> str:
    t, u = rng.sample(_TOPICS, 2)
    picked = rng.sample(_SENTENCES, rng.randint(3, 5))
    return " ".join(s.format(t=t, u=u, T=t[:1].upper() + t[1:]) for s in picked)


_LIST_TAIL = re.compile(r"((?:task|instruction)\s*)?(\d+)\s*([.:)])\s*$", re.IGNORECASE)


def _continue_prompt(prompt: str, rng: random.Random) -> str:
    # Self-Instruct style prompts end in an open numbered item ("9." or "Task 9:");
    # continue it and add a few more items in the same style so that the
    # client's list parsing and stop sequences have something real to chew on.
    m = _LIST_TAIL.search(prompt)
    if not m:
        return " " + " ".join(_instruction(rng) for _ in range(rng.randint(1, 3)))
    prefix, num, delim = m.group(1) or "", int(m.group(2)), m.group(3)
    lines = [" " + _instruction(rng)]
    for i in range(1, rng.randint(3, 6)):
        lines.append(f"{prefix}{num + i}{delim} {_instruction(rng)}")
    return "\n".join(lines)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def default_responder(kind: str, body: dict) -> list[str]:
    """Deterministic filler: same body -> same text; one distinct text per choice."""
    n = int(body.get("n") or 1)
    if kind == "completion":
        prompts = body.get("prompt")
        prompts = prompts if isinstance(prompts, list) else [prompts]
        return [_continue_prompt(str(p), _rng_for(body, i)) for i in range(len(prompts) * n)
                for p in [prompts[i // n]]]
    last_user = ""
    for msg in body.get("messages") or []:
        if isinstance(msg, dict) and msg.get("role") == "user":
            last_user = _message_text(msg.get("content"))
    out = []
    for i in range(n):
        rng = _rng_for(body, i)
        if "rewrite" in last_user.lower():  # Evol-Instruct asks for a new instruction, not an answer
            out.append(_instruction(rng) + " " + _instruction(rng))
        else:
            out.append(_paragraph(rng))
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _unit(*parts: Any) -> float:
    """A uniform [0, 1) number that is a pure function of its arguments."""
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


_TOKEN = re.compile(r"\S+")


def _count_tokens(text: str) -> int:
    # Whitespace words: a stable, cheap stand-in for a tokenizer; only the
    # shape and monotonicity of usage numbers matter to the client.
    return len(_TOKEN.findall(text))


def _truncate_tokens(text: str, n: int) -> str:
    if n <= 0:
        return ""
    for i, m in enumerate(_TOKEN.finditer(text)):
        if i == n - 1:
            return text[: m.end()]
    return text


# --------------------------------------------------------------------------- HTTP plumbing

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}
_MAX_BODY = 256 * 1024 * 1024
_ADMIN_PATHS = ("/stats", "/stub/")


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list = dataclasses.field(default_factory=list)
    action: str | None = None  # "hang" or "reset": the connection loop carries these out


def _json_response(status: int, obj: Any, headers: list | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), headers=headers or [])


def _error(status: int, message: str, type_: str = "invalid_request_error",
           code: str | None = None, param: str | None = None, headers: list | None = None) -> _Response:
    return _json_response(status, {"error": {"message": message, "type": type_, "param": param, "code": code}},
                          headers)


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """Parse one request; None on a clean close between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise _HttpError(400, "truncated request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise _HttpError(431, "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # RFC 9112 lets clients send stray CRLFs between requests
        lines.pop(0)
    try:
        method, target, version = lines[0].split(" ", 2)
    except (ValueError, IndexError):
        raise _HttpError(400, "malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    req = _Request()
    req.method = method.upper()
    req.path, _, req.query = target.partition("?")
    req.headers = headers
    conn = headers.get("connection", "").lower()
    req.keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    if "chunked" in headers.get("transfer-encoding", "").lower():
        req.body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _HttpError(400, "bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            raise _HttpError(413, "body too large")
        req.body = await reader.readexactly(length) if length else b""
    return req


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts, total = [], 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _HttpError(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # skip trailers
                pass
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _HttpError(413, "body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _encode(resp: _Response, keep_alive: bool) -> bytes:
    head = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}",
            f"content-type: {resp.content_type}",
            f"content-length: {len(resp.body)}",
            "connection: keep-alive" if keep_alive else "connection: close"]
    head.extend(f"{k}: {v}" for k, v in resp.headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body


def _parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise _HttpError(400, "multipart body without boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + m.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, content.removesuffix(b"\r\n"))
    return fields


def _fmt_duration(seconds: float) -> str:
    # OpenAI's x-ratelimit-reset-* format: "20ms", "1.5s", "6m0s".
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    return f"{int(seconds // 60)}m{int(seconds % 60)}s"


# --------------------------------------------------------------------------- the application

class StubApp:
    """The server proper. Runs on whatever asyncio loop calls start(); StubServer wraps it in a thread."""

    def __init__(self, config: StubConfig | None = None):
        self.config = config or StubConfig()
        self.config.fault_rates()  # fail fast on bad rates rather than on the first request
        self._lock = threading.Lock()  # stats and log are read from other threads in in-process mode
        self._server: asyncio.AbstractServer | None = None
        self._conn_tasks: set[asyncio.Task] = set()
        self._batch_tasks: dict[str, asyncio.Task] = {}
        self._ids = itertools.count(1)
        self.port: int | None = None
        self.files: dict[str, dict] = {}    # id -> {"meta": file object, "content": bytes}
        self.batches: dict[str, dict] = {}  # id -> batch object
        self.reset()

    # ----- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # The default backlog (100) drops SYNs when a benchmark opens 1000+
        # connections at once; the kernel caps this at net.core.somaxconn anyway.
        self._server = await asyncio.start_server(self._serve_conn, host, port, backlog=4096,
                                                  reuse_address=True, limit=256 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Python 3.11's wait_closed() does not wait for, or end, open
        # connections: hanging "timeout" faults would outlive the server.
        tasks = list(self._conn_tasks) + list(self._batch_tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ----- observability

    def reset(self) -> None:
        """Forget counters, request log, per-key attempts and the fault RNG (not files or batches)."""
        with self._lock:
            self._rng = random.Random(self.config.seed)
            self._attempts: dict[str, int] = {}
            self._log: deque = deque(maxlen=self.config.log_max_requests)
            self._seq = 0
            self._rl_window_start = time.monotonic()
            self._rl_requests = 0
            self._rl_tokens = 0
            self._stats = {
                "requests_total": 0, "by_path": {}, "by_status": {},
                "faults": {k: 0 for k in (*FAULT_KINDS, "ratelimit")},
                "in_flight": 0, "max_in_flight": 0, "connections_open": 0, "max_connections_open": 0,
                "connections_total": 0, "prompt_tokens": 0, "completion_tokens": 0, "responder_errors": 0,
                "batches_created": 0, "started_at": time.time(),
            }

    def stats(self) -> dict:
        with self._lock:
            snap = json.loads(json.dumps(self._stats))
        snap["uptime_s"] = round(time.time() - snap["started_at"], 3)
        return snap

    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._log]

    def _bump(self, group: str, key: Any, n: int = 1) -> None:
        with self._lock:
            d = self._stats[group]
            d[key] = d.get(key, 0) + n

    # ----- connection loop

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        st = self._stats
        with self._lock:
            st["connections_total"] += 1
            st["connections_open"] += 1
            st["max_connections_open"] = max(st["max_connections_open"], st["connections_open"])
        abort = False
        try:
            while True:
                try:
                    req = await _read_request(reader)
                except _HttpError as e:
                    writer.write(_encode(_error(e.status, str(e)), keep_alive=False))
                    await writer.drain()
                    break
                if req is None:
                    break
                # Admin polls are not client traffic; keep them out of the concurrency figure.
                counted = not (req.path == "/stats" or req.path.startswith("/stub/"))
                if counted:
                    with self._lock:
                        st["in_flight"] += 1
                        st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
                try:
                    resp = await self._handle(req)
                    if resp.action == "hang":
                        await self._hang(reader)
                        break
                    if resp.action == "reset":
                        await self._reset(writer, resp)
                        abort = True
                        break
                    keep = req.keep_alive
                    writer.write(_encode(resp, keep))
                    await writer.drain()
                finally:
                    if counted:
                        with self._lock:
                            st["in_flight"] -= 1
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            abort = True
        finally:
            with self._lock:
                st["connections_open"] -= 1
            self._conn_tasks.discard(task)
            if abort:
                writer.transport.abort()
            else:
                writer.close()

    async def _hang(self, reader: asyncio.StreamReader) -> None:
        # Hold the request unanswered, but notice if the client gives up first,
        # so abandoned hangs do not pile up during long fault runs.
        deadline = time.monotonic() + self.config.timeout_hang_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                if not await asyncio.wait_for(reader.read(65536), left):
                    return
            except (TimeoutError, ConnectionError):
                return

    async def _reset(self, writer: asyncio.StreamWriter, resp: _Response) -> None:
        data = _encode(resp, keep_alive=True)
        head_len = data.index(b"\r\n\r\n") + 4
        writer.write(data[: head_len + len(resp.body) // 2])
        await writer.drain()
        # Give the client a moment to read the head, so it fails mid-body rather
        # than before the response; SO_LINGER 0 turns the close into a real RST.
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    # ----- routing

    async def _handle(self, req: _Request) -> _Response:
        path = req.path
        if path == "/stats" or path.startswith("/stub/"):
            return self._admin(req)
        entry = {"seq": 0, "time": time.time(), "method": req.method, "path": path, "query": req.query,
                 "headers": dict(req.headers), "status": None, "fault": None}
        cap = self.config.log_max_body_chars
        text = req.body[: cap * 4].decode("utf-8", "replace")
        entry["body"] = text[:cap]
        entry["body_truncated"] = len(text) > cap or len(req.body) > cap * 4
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._stats["requests_total"] += 1
            self._log.append(entry)
        route = path
        try:
            route, resp = await self._route(req, entry)
        except Exception as e:  # a stub bug or a raising responder must surface as a 500, not a dead socket
            traceback.print_exc(file=sys.stderr)
            resp = _error(500, f"stub internal error: {type(e).__name__}: {e}", "server_error")
        entry["status"] = 0 if resp.action else resp.status  # 0: no complete response (hang or reset)
        self._bump("by_path", route)
        self._bump("by_status", str(entry["status"]))
        resp.headers.append(("x-request-id", f"req_stub{entry['seq']:08d}"))
        return resp

    async def _route(self, req: _Request, entry: dict) -> tuple[str, _Response]:
        m, path = req.method, req.path
        if self.config.html_page is not None:
            return path, _Response(200, self.config.html_page.encode(), content_type="text/html; charset=utf-8")
        if path == "/health" and m == "GET":
            return path, _json_response(200, {"status": "ok"})
        if not path.startswith("/v1/"):
            return path, _error(404, f"Invalid URL ({m} {path})")
        if (key := self.config.require_api_key) is not None:
            auth = req.headers.get("authorization", "")
            if not auth:
                return path, _error(401, "You didn't provide an API key. You need to provide your API key "
                                         "in an Authorization header using Bearer auth.")
            if auth != f"Bearer {key}":
                # The presented key is not echoed back: tests check where keys end up.
                return path, _error(401, "Incorrect API key provided.", code="invalid_api_key")
        if path == "/v1/chat/completions" and m == "POST":
            return path, await self._generate(req, "chat", entry)
        if path == "/v1/completions" and m == "POST":
            return path, await self._generate(req, "completion", entry)
        if path == "/v1/models" and m == "GET":
            if self.config.models_status != 200:
                return path, _error(self.config.models_status, f"Invalid URL ({m} {path})")
            return path, _json_response(200, {"object": "list", "data": [self._model_obj(x) for x in self._models()]})
        if path.startswith("/v1/models/") and m == "GET":
            name = path[len("/v1/models/"):]
            if self.config.models_status != 200:
                return "/v1/models/{id}", _error(self.config.models_status, f"Invalid URL ({m} {path})")
            if name not in self._models():
                return "/v1/models/{id}", self._no_model(name)
            return "/v1/models/{id}", _json_response(200, self._model_obj(name))
        if path == "/v1/files" or path.startswith("/v1/files/"):
            return self._files(req)
        if path == "/v1/batches" or path.startswith("/v1/batches/"):
            return self._batches(req)
        return path, _error(404, f"Invalid URL ({m} {path})")

    def _models(self) -> list[str]:
        return self.config.models or ["stub-model"]

    def _model_obj(self, name: str) -> dict:
        created = int(time.time()) if self.config.models_created_now else 1700000000
        return {"id": name, "object": "model", "created": created, "owned_by": "openai-stub",
                **(self.config.model_fields or {})}

    @staticmethod
    def _no_model(name: str) -> _Response:
        return _error(404, f"The model `{name}` does not exist or you do not have access to it.",
                      code="model_not_found")

    def _admin(self, req: _Request) -> _Response:
        # Admin endpoints are not logged or counted, so polling them never
        # disturbs assertions such as "the client made zero calls".
        if req.path == "/stats":
            return _json_response(200, self.stats())
        if req.path == "/stub/requests":
            return _json_response(200, self.requests())
        if req.path == "/stub/reset" and req.method == "POST":
            self.reset()
            return _json_response(200, {"ok": True})
        if req.path == "/stub/config":
            if req.method == "POST":
                try:
                    updates = req.json()
                    for k, v in updates.items():
                        if k == "responder" or not hasattr(self.config, k):
                            raise ValueError(f"unknown config field {k!r}")
                    old = dataclasses.replace(self.config)
                    for k, v in updates.items():
                        setattr(self.config, k, v)
                    if "log_max_requests" in updates:
                        with self._lock:
                            self._log = deque(self._log, maxlen=self.config.log_max_requests)
                    try:
                        self.config.fault_rates()
                    except ValueError:
                        for f in dataclasses.fields(old):
                            setattr(self.config, f.name, getattr(old, f.name))
                        raise
                except (ValueError, AttributeError) as e:
                    return _error(400, str(e))
            cfg = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
                   if f.name != "responder"}
            return _json_response(200, cfg)
        return _error(404, f"Invalid URL ({req.method} {req.path})")

    # ----- generation

    def _parse_generation(self, kind: str, body: Any) -> _Response | None:
        """Validate a request body the way OpenAI would; an error response, or None if fine."""
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object.")
        model = body.get("model")
        if not model:
            return _error(400, "you must provide a model parameter", param="model")
        if self.config.models and model not in self.config.models and not self.config.any_model:
            return self._no_model(str(model))
        if kind == "chat":
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(isinstance(x, dict) and "role" in x for x in msgs):
                return _error(400, "'messages' must be a non-empty array of message objects.", param="messages")
        elif not isinstance(body.get("prompt"), (str, list)):
            return _error(400, "'prompt' is a required property.", param="prompt")
        n = body.get("n", 1)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
            return _error(400, f"{n!r} is not a valid value for 'n': it must be an integer in [1, 128].", param="n")
        if body.get("stream"):
            # Streaming is out of scope for this stub; say so rather than answer wrongly.
            return _error(400, "The stub does not implement stream=true.", param="stream")
        return None

    def _choose_fault(self, key: str) -> str | None:
        cfg = self.config
        rates = cfg.fault_rates()
        total = sum(r for _, r in rates)
        if total <= 0:
            return None

        def bucket(u: float) -> str | None:
            acc = 0.0
            for kind, r in rates:
                acc += r
                if u < acc:
                    return kind
            return None

        if cfg.faults_per_request_key <= 0:
            with self._lock:
                u = self._rng.random()
            return bucket(u)
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        if attempt >= cfg.faults_per_request_key or _unit(cfg.seed, key) >= total:
            return None
        # Which fault it gets may differ between attempts, but is still a pure
        # function of (seed, request, attempt number).
        return bucket(_unit(cfg.seed, key, attempt) * total)

    def _ratelimit(self, tokens: int, charge: bool) -> tuple[list, float | None]:
        """x-ratelimit-* headers, and the wait in seconds if the budget is exhausted (enforce mode)."""
        cfg = self.config
        with self._lock:
            now = time.monotonic()
            if now - self._rl_window_start >= 60.0:
                self._rl_window_start, self._rl_requests, self._rl_tokens = now, 0, 0
            reset_in = 60.0 - (now - self._rl_window_start)
            exhausted = (self._rl_requests >= cfg.ratelimit_requests or self._rl_tokens >= cfg.ratelimit_tokens)
            if charge and not (exhausted and cfg.ratelimit_enforce):
                self._rl_requests += 1
                self._rl_tokens += tokens
            rem_req = max(cfg.ratelimit_requests - self._rl_requests, 0)
            rem_tok = max(cfg.ratelimit_tokens - self._rl_tokens, 0)
        headers = []
        if cfg.ratelimit_headers:
            headers = [("x-ratelimit-limit-requests", cfg.ratelimit_requests),
                       ("x-ratelimit-remaining-requests", rem_req),
                       ("x-ratelimit-limit-tokens", cfg.ratelimit_tokens),
                       ("x-ratelimit-remaining-tokens", rem_tok),
                       ("x-ratelimit-reset-requests", _fmt_duration(reset_in)),
                       ("x-ratelimit-reset-tokens", _fmt_duration(reset_in))]
        return headers, (reset_in if exhausted and cfg.ratelimit_enforce else None)

    def _retry_headers(self, seconds: float) -> list:
        return [("retry-after", str(max(int(seconds + 0.999), 0))),
                ("retry-after-ms", str(int(seconds * 1000)))]

    async def _generate(self, req: _Request, kind: str, entry: dict) -> _Response:
        try:
            body = req.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if (bad := self._parse_generation(kind, body)) is not None:
            return bad
        cfg = self.config
        prompt_tokens = self._prompt_tokens(kind, body)
        fault = self._choose_fault(_digest(body))
        if fault is not None:
            entry["fault"] = fault
            self._bump("faults", fault)
        if cfg.ratelimit_headers or cfg.ratelimit_enforce:
            # Charge the request before answering, as OpenAI does with max_tokens as the estimate.
            rl_headers, wait = self._ratelimit(prompt_tokens + int(body.get("max_tokens") or 0), charge=fault is None)
            if wait is not None:
                entry["fault"] = "ratelimit"
                self._bump("faults", "ratelimit")
                return _error(429, "Rate limit reached for requests (stub budget exhausted).", "requests",
                              "rate_limit_exceeded", headers=rl_headers + self._retry_headers(wait))
        else:
            rl_headers = []
        # 429s are rejected at the front door, and a hang needs no extra delay:
        # both skip latency, everything else pays it.
        if fault == "429":
            return _error(429, "Rate limit reached for requests. Please try again later.", "requests",
                          "rate_limit_exceeded", headers=rl_headers + self._retry_headers(cfg.retry_after_s))
        if fault == "timeout":
            return _Response(0, action="hang")
        delay = cfg.latency_s + (random.uniform(0, cfg.latency_jitter_s) if cfg.latency_jitter_s > 0 else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "500":
            return _error(500, "The server had an error while processing your request. Sorry about that!",
                          "server_error")
        if fault == "502":
            # Real 502s come from the edge proxy as HTML, not as OpenAI JSON.
            return _Response(502, b"<html><head><title>502 Bad Gateway</title></head><body>"
                                  b"<center><h1>502 Bad Gateway</h1></center></body></html>", "text/html")
        if fault == "503":
            return _error(503, "The engine is currently overloaded, please try again later.", "server_error")

        try:
            payload = await self._completion_payload(kind, body, prompt_tokens, fault)
        except _ResponderError as e:
            with self._lock:
                self._stats["responder_errors"] += 1
            return _error(500, f"stub responder raised: {e}", "server_error")
        with self._lock:
            self._stats["prompt_tokens"] += payload["usage"]["prompt_tokens"]
            self._stats["completion_tokens"] += payload["usage"]["completion_tokens"]
        resp = _json_response(200, payload, rl_headers + [("openai-processing-ms", str(int(delay * 1000)))])
        if fault == "invalid_json":
            resp.body = resp.body[: len(resp.body) // 2]
        elif fault == "reset":
            resp.action = "reset"
        return resp

    @staticmethod
    def _prompt_tokens(kind: str, body: dict) -> int:
        if kind == "chat":
            # +4 per message mirrors the chat format's per-message overhead.
            return sum(_count_tokens(_message_text(m.get("content"))) + 4 for m in body["messages"])
        prompt = body["prompt"]
        return sum(_count_tokens(str(p)) for p in (prompt if isinstance(prompt, list) else [prompt]))

    async def _completion_payload(self, kind: str, body: dict, prompt_tokens: int,
                                  fault: str | None) -> dict:
        """The OpenAI response object for a valid request (shared by the sync and batch paths)."""
        responder = self.config.responder or default_responder
        try:
            texts = responder(kind, body)
            if inspect.isawaitable(texts):
                texts = await texts
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            raise _ResponderError(f"{type(e).__name__}: {e}") from e
        if isinstance(texts, str):
            n = int(body.get("n") or 1)
            if kind == "completion" and isinstance(body["prompt"], list):
                n *= len(body["prompt"])
            texts = [texts] * n
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)

        choices, completion_tokens = [], 0
        for i, text in enumerate(texts):
            text, finish = str(text), "stop"
            for s in stops:
                if s and s in text:
                    text = text[: text.index(s)]
            if fault == "empty":
                text = ""
            elif fault == "length":
                text, finish = _truncate_tokens(text, max(_count_tokens(text) // 2, 1)), "length"
            if isinstance(max_tokens, int) and _count_tokens(text) > max_tokens:
                text, finish = _truncate_tokens(text, max_tokens), "length"
            completion_tokens += _count_tokens(text)
            if kind == "chat":
                choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                                "logprobs": None, "finish_reason": finish})
            else:
                choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": finish})
        return {
            "id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-stub{next(self._ids):012d}",
            "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_stub",
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # ----- files

    def _file_obj(self, fid: str) -> dict:
        return self.files[fid]["meta"]

    def _new_file(self, content: bytes, filename: str, purpose: str) -> dict:
        fid = f"file-stub{next(self._ids):012d}"
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "status_details": None}
        self.files[fid] = {"meta": meta, "content": content}
        return meta

    def _files(self, req: _Request) -> tuple[str, _Response]:
        m, parts = req.method, req.path.split("/")[3:]  # after "", "v1", "files"
        if not parts:
            if m == "GET":
                return "/v1/files", _json_response(200, {"object": "list", "data": [
                    f["meta"] for f in self.files.values()], "has_more": False})
            if m != "POST":
                return "/v1/files", _error(405, f"Method {m} not allowed")
            ctype = req.headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                fields = _parse_multipart(req.body, ctype)
                if "file" not in fields:
                    return "/v1/files", _error(400, "Missing file field.", param="file")
                purpose = fields.get("purpose", (None, b""))[1].decode() or None
                filename, content = fields["file"][0] or "upload.jsonl", fields["file"][1]
            else:
                # Raw upload (e.g. application/jsonl): metadata in the query string.
                q = {k: v[0] for k, v in parse_qs(req.query).items()}
                purpose, filename, content = q.get("purpose", "batch"), q.get("filename", "upload.jsonl"), req.body
            if not purpose:
                return "/v1/files", _error(400, "Missing purpose.", param="purpose")
            return "/v1/files", _json_response(200, self._new_file(content, filename, purpose))
        fid = parts[0]
        route = "/v1/files/{id}" + ("/content" if parts[1:] == ["content"] else "")
        if fid not in self.files or len(parts) > 2 or (parts[1:] and parts[1:] != ["content"]):
            return route, _error(404, f"No such File object: {fid}", param="id")
        if parts[1:] == ["content"] and m == "GET":
            return route, _Response(200, self.files[fid]["content"], "application/octet-stream")
        if m == "GET":
            return route, _json_response(200, self._file_obj(fid))
        if m == "DELETE":
            del self.files[fid]
            return route, _json_response(200, {"id": fid, "object": "file", "deleted": True})
        return route, _error(405, f"Method {m} not allowed")

    # ----- batches

    def _batches(self, req: _Request) -> tuple[str, _Response]:
        m, parts = req.method, req.path.split("/")[3:]
        if not parts:
            if m == "GET":
                data = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
                return "/v1/batches", _json_response(200, {
                    "object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": False})
            if m != "POST":
                return "/v1/batches", _error(405, f"Method {m} not allowed")
            return "/v1/batches", self._create_batch(req)
        bid = parts[0]
        route = "/v1/batches/{id}" + ("/cancel" if parts[1:] == ["cancel"] else "")
        batch = self.batches.get(bid)
        if batch is None or len(parts) > 2 or (parts[1:] and parts[1:] != ["cancel"]):
            return route, _error(404, f"No batch found with id '{bid}'.")
        if parts[1:] == ["cancel"] and m == "POST":
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                return route, _error(409, f"Cannot cancel a batch with status '{batch['status']}'.")
            batch["status"], batch["cancelling_at"] = "cancelling", int(time.time())
            answer = dict(batch)
            if (task := self._batch_tasks.pop(bid, None)) is not None:
                task.cancel()
            batch["status"], batch["cancelled_at"] = "cancelled", int(time.time())
            return route, _json_response(200, answer)
        if m == "GET" and not parts[1:]:
            return route, _json_response(200, batch)
        return route, _error(405, f"Method {m} not allowed")

    def _create_batch(self, req: _Request) -> _Response:
        try:
            body = req.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object.")
        fid, endpoint = body.get("input_file_id"), body.get("endpoint")
        if fid not in self.files:
            return _error(400, f"Invalid 'input_file_id': '{fid}'.", param="input_file_id")
        if endpoint not in ("/v1/chat/completions", "/v1/completions"):
            return _error(400, f"Invalid 'endpoint': '{endpoint}'.", param="endpoint")
        now = int(time.time())
        bid = f"batch_stub{next(self._ids):012d}"
        batch = {
            "id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
            "completion_window": body.get("completion_window", "24h"), "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }
        self.batches[bid] = batch
        with self._lock:
            self._stats["batches_created"] += 1
        self._batch_tasks[bid] = asyncio.get_running_loop().create_task(self._run_batch(batch))
        return _json_response(200, batch)

    async def _run_batch(self, batch: dict) -> None:
        try:
            await self._run_batch_inner(batch)
        finally:
            self._batch_tasks.pop(batch["id"], None)

    async def _run_batch_inner(self, batch: dict) -> None:
        kind = "chat" if batch["endpoint"] == "/v1/chat/completions" else "completion"
        lines, errors, seen = [], [], set()
        raw = self.files[batch["input_file_id"]]["content"].decode("utf-8", "replace")
        for no, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                cid = item["custom_id"]
                if not isinstance(item.get("body"), dict):
                    raise TypeError("missing body")
            except (ValueError, KeyError, TypeError) as e:
                errors.append({"code": "invalid_json_line", "message": f"line {no}: {e}", "param": None, "line": no})
                continue
            if item.get("url", batch["endpoint"]) != batch["endpoint"]:
                errors.append({"code": "mismatched_endpoint", "message": f"line {no}: url differs from the batch "
                               "endpoint", "param": "url", "line": no})
            if cid in seen:
                errors.append({"code": "duplicate_custom_id", "message": f"line {no}: duplicate custom_id {cid!r}",
                               "param": "custom_id", "line": no})
            seen.add(cid)
            lines.append(item)
        if not lines and not errors:
            errors.append({"code": "empty_file", "message": "The input file is empty.", "param": None, "line": None})
        if errors:
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": errors})
            return
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        batch["request_counts"]["total"] = len(lines)
        await asyncio.sleep(self.config.batch_delay_s)
        batch.update(status="finalizing", finalizing_at=int(time.time()))
        out, err = [], []
        for item in lines:
            body = item["body"]
            rid = f"req_stub{next(self._ids):012d}"
            record = {"id": f"batch_req_stub{next(self._ids):012d}", "custom_id": item["custom_id"], "error": None}
            status, payload = 200, None
            if (bad := self._parse_generation(kind, body)) is not None:
                status, payload = bad.status, json.loads(bad.body)
            elif _unit(self.config.seed, "batch", item["custom_id"]) < self.config.batch_error_rate:
                status, payload = 500, json.loads(_error(500, "The server had an error processing your request.",
                                                         "server_error").body)
            else:
                try:
                    payload = await self._completion_payload(kind, body, self._prompt_tokens(kind, body), None)
                except _ResponderError as e:
                    status, payload = 500, json.loads(_error(500, f"stub responder raised: {e}", "server_error").body)
            record["response"] = {"status_code": status, "request_id": rid, "body": payload}
            (out if status == 200 else err).append(record)
        batch["request_counts"].update(completed=len(out), failed=len(err))
        if out:
            batch["output_file_id"] = self._new_file(_jsonl(out), f"{batch['id']}_output.jsonl", "batch_output")["id"]
        if err:
            batch["error_file_id"] = self._new_file(_jsonl(err), f"{batch['id']}_error.jsonl", "batch_output")["id"]
        batch.update(status="completed", completed_at=int(time.time()))


class _ResponderError(Exception):
    pass


def _jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


# --------------------------------------------------------------------------- in-process runner

class StubServer:
    """Runs a StubApp on its own event loop in a daemon thread; use as a context manager."""

    def __init__(self, config: StubConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.app = StubApp(config)
        self.host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> StubConfig:
        return self.app.config

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def stats(self) -> dict:
        return self.app.stats()

    @property
    def requests(self) -> list[dict]:
        return self.app.requests()

    def requests_to(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def reset(self) -> None:
        self.app.reset()

    def start(self) -> StubServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.app.start(self.host, self._port))
            except BaseException as e:  # report bind errors to the caller, not to a dead thread
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.app.stop())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="openai-stub", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI

def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    # Flags are derived from StubConfig so the CLI can never fall behind it.
    for f in dataclasses.fields(StubConfig):
        if f.name == "responder":
            continue
        flag = "--" + f.name.replace("_", "-")
        names, help_ = [flag], f"StubConfig.{f.name}"
        if f.name.endswith("_s"):
            names.append(flag[:-2])  # --latency as well as --latency-s
        t = str(f.type)
        if t == "bool":
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        elif t.startswith("list"):
            parser.add_argument(*names, dest=f.name, default=f.default, metavar="A,B", help=help_,
                                type=lambda s: [x for x in s.split(",") if x])
        else:
            conv = {"float": float, "int": int}.get(t, str)
            parser.add_argument(*names, dest=f.name, type=conv, default=f.default, help=help_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    _add_config_flags(parser)
    args = parser.parse_args(argv)
    config = StubConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StubConfig)
                           if f.name != "responder"})

    async def serve() -> None:
        app = StubApp(config)
        await app.start(args.host, args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # The one line a parent process waits for; everything else goes to stderr.
        print(f"READY http://{args.host}:{app.port}/v1", flush=True)
        await stop.wait()
        await app.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
