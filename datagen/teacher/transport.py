"""How the teacher's HTTP client is built: one place to tune connection pooling for throughput.

The teacher keeps up to `max_concurrency` requests in flight; against a slow OpenAI-compatible server
(a second or more per answer) that is hundreds to thousands of open connections, and what limits the
request rate is the client's CPU per request: every request's bookkeeping runs on one event loop,
and when C answers arrive together the last waits for the C-1 before it.

Design (the API stays httpx: `make_async_client` returns an `httpx.AsyncClient`, responses are
`httpx.Response`s, failures are httpx exceptions):

1. `AiohttpTransport`, an httpx transport on one aiohttp connection pool: aiohttp's pool hands out a
   free connection in O(1) and parses HTTP in C; each body is read whole and turned into an
   `httpx.Response`.
2. `TeacherHttpClient`, an `httpx.AsyncClient` whose `post(url, json=...)` — the teacher's one hot
   call — skips httpx's per-request pipeline (URL merging, auth and redirect generators, event hooks,
   cookie extraction, stream wrappers) whenever that pipeline would do nothing: no auth, hooks, params,
   cookies, redirect following or proxy mount configured and no other argument passed. It builds the
   same `httpx.Request` (same headers, same JSON bytes, same timeouts), hands it to the same transport
   and returns the same kind of response; a `Set-Cookie` answer is stored as httpx would store it
   (after which requests take the full path, to send it). Everything else — other methods, other
   arguments, any of those settings — goes through httpx unchanged.

Measured on 2 cores against tests/openai_stub.py in its own process answering after a fixed 1 s
(bench/teacher_throughput.py reports the current figures; the machine was shared with other work):

- httpx's own transport (httpcore + h11), one pool of C connections: each request walks the pool,
  so the CPU per request grows with C: ~4 ms at 64, ~20 ms at 256 and 1024, i.e. ~12 % and ~3 % of the
  ideal rate (C / latency) at 256 and 1024 in flight.
- sharding over C/4 httpx clients of 4 connections each removes the walk but keeps httpcore's and
  h11's pure-Python cost, ~1.8 ms CPU per request: ~40 % of ideal at 256, ~20 % at 1024.
- the `httpx-aiohttp` package's transport: ~0.4-0.55 ms per request (it streams each body through two
  wrappers), and it maps connection resets and server disconnects to `ConnectTimeout`, which
  client.py would count as timeouts.
- 1. alone: ~0.29-0.35 ms per request with the httpx pipeline on top (bare aiohttp: ~0.11 ms).
- 1. + 2.: ~0.18 ms per request (~0.25 ms through `Teacher.complete`); one pool suffices, sharding it
  over several aiohttp sessions measured no better.

What the transport guarantees, so that client.py's retry logic works unchanged: every failure
surfaces as an `httpx.TransportError` subclass — `ConnectTimeout` / `ReadTimeout` (both
`httpx.TimeoutException`) for timeouts, `ConnectError` when the server cannot be reached,
`ReadError` for resets and truncated bodies, `RemoteProtocolError` for a server that hangs up
without answering or speaks broken HTTP. httpx's `Timeout` maps onto aiohttp's: `connect` ->
`sock_connect`, `read` -> `sock_read` (the longest gap between two reads), `pool` + `connect` ->
`connect` (waiting for a pool slot plus connecting); aiohttp has no write timeout, a stalled write
ends at the read timeout. Bodies are read whole before `post()` returns (what non-streaming OpenAI
calls want); `client.stream()` works but buffers. Compressed bodies are decoded once, by httpx.
Proxies from the environment stay httpx's (it mounts its own transports for them). Idle connections
are kept 4 s, under the 5 s keep-alive of uvicorn-based servers (vLLM, LiteLLM), so a reused
connection is rarely one the server is closing.

The aiohttp session is created on the first request, inside the event loop that uses it, and is
bound to that loop (as the Teacher's semaphore is).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import time
from typing import Any

import aiohttp
import httpx
import yarl

# Under the 5 s default keep-alive of uvicorn (vLLM, LiteLLM), so we drop an idle connection
# before the server does and a POST rarely races the server's close.
KEEPALIVE_S = 4.0

_httpx_log = logging.getLogger("httpx")  # httpx logs every request here at INFO; so do we


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on one aiohttp connection pool of `max_connections` connections."""

    def __init__(self, max_connections: int, keepalive_s: float = KEEPALIVE_S,
                 ssl_context: ssl.SSLContext | None = None):
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()  # httpx's defaults: certifi, SSL_CERT_FILE
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                         keepalive_timeout=self._keepalive_s, ssl=self._ssl_context)
        # httpx has already built every header it wants sent; aiohttp must not add its own, keep
        # cookies (httpx does), follow proxies (httpx mounts its own transports) or decompress.
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"))
        return self._session

    def _timeout(self, t: dict) -> aiohttp.ClientTimeout:
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            acquire = None if pool is None or connect is None else pool + connect
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(total=None, connect=acquire,
                                                                   sock_connect=connect, sock_read=read)
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.send(request, yarl.URL(str(request.url), encoded=True))

    async def send(self, request: httpx.Request, url: yarl.URL) -> httpx.Response:
        """Send `request` to `url` (the same URL, already in yarl's form) and read the whole answer."""
        session = self._session or self._open_session()
        try:
            data: bytes | None = request.content
        except httpx.RequestNotRead:  # a streaming request body: gather it, OpenAI bodies are small
            data = b"".join([chunk async for chunk in request.stream])
        try:
            async with session.request(
                    request.method, url, headers=request.headers.multi_items(), data=data or None,
                    allow_redirects=False, compress=False,
                    timeout=self._timeout(request.extensions.get("timeout", {}))) as resp:
                content = await resp.read()
                status, raw_headers, reason, version = resp.status, resp.raw_headers, resp.reason, resp.version
        except aiohttp.ClientError as e:
            raise _as_httpx_error(e, request) from e
        except asyncio.TimeoutError as e:  # aiohttp's timeouts are ClientErrors; a bare one is still a timeout
            raise httpx.ReadTimeout(str(e) or "timed out", request=request) from e
        except OSError as e:  # a socket error aiohttp did not wrap
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        extensions: dict[str, Any] = {
            "http_version": b"HTTP/%d.%d" % (version.major, version.minor) if version else b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(status, headers=raw_headers, content=content, request=request,
                              extensions=extensions)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _as_httpx_error(e: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception httpx's own transport would raise for the same failure."""
    message = str(e) or type(e).__name__
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        cls: type[httpx.TransportError] = httpx.ConnectTimeout
    elif isinstance(e, aiohttp.ServerTimeoutError):  # SocketTimeoutError: no byte within the read timeout
        cls = httpx.ReadTimeout
    elif isinstance(e, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS handshake
        cls = httpx.ConnectError
    elif isinstance(e, aiohttp.ServerDisconnectedError):  # closed before a complete response head
        cls = httpx.RemoteProtocolError
    elif isinstance(e, aiohttp.ClientPayloadError):  # reset or closed in the middle of the body
        cls = httpx.ReadError
    elif isinstance(e, aiohttp.ClientResponseError):  # a response aiohttp could not parse as HTTP
        cls = httpx.RemoteProtocolError
    elif isinstance(e, aiohttp.InvalidURL):
        cls = httpx.UnsupportedProtocol
    elif isinstance(e, aiohttp.ClientConnectionError):  # ClientOSError, a reset while writing
        cls = httpx.ReadError
    else:
        cls = httpx.TransportError
    return cls(message, request=request)


class TeacherHttpClient(httpx.AsyncClient):
    """`httpx.AsyncClient` over `AiohttpTransport`, with a short path for plain `post(url, json=...)`."""

    def __init__(self, *, transport: AiohttpTransport, **kwargs: Any):
        super().__init__(transport=transport, **kwargs)
        self._aiohttp = transport
        self._targets: dict[str, tuple[httpx.URL, yarl.URL] | None] = {}  # url arg -> target, None: full path
        self._targets_base = self.base_url

    def _short_path_target(self, url: httpx.URL | str) -> tuple[httpx.URL, yarl.URL] | None:
        """Where a plain POST to `url` goes, or None when httpx's pipeline has work to do for it."""
        if (self.auth is not None or self.follow_redirects or self.params or self.cookies
                or any(self.event_hooks.values()) or self.is_closed or not isinstance(url, str)):
            return None
        if self.base_url is not self._targets_base:
            self._targets.clear()
            self._targets_base = self.base_url
        try:
            return self._targets[url]
        except KeyError:
            pass
        target = self.build_request("POST", url).url  # httpx's own base_url merging, once per url
        # A proxy mount (from the environment, say) owns this URL: leave it to httpx.
        routed = getattr(self, "_transport_for_url", None)
        ours = routed is not None and routed(target) is self._aiohttp
        self._targets[url] = (target, yarl.URL(str(target), encoded=True)) if ours else None
        return self._targets[url]

    async def post(self, url: httpx.URL | str, *, json: Any | None = None, **kwargs: Any) -> httpx.Response:
        target = None if kwargs or json is None else self._short_path_target(url)
        if target is None:
            return await super().post(url, json=json, **kwargs)
        # What build_request would make: the client's headers, Host, httpx's own JSON encoding.
        request = httpx.Request("POST", target[0], headers=self.headers, json=json,
                                extensions={"timeout": self.timeout.as_dict()})
        start = time.perf_counter()
        response = await self._aiohttp.send(request, target[1])
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - start)
        response.default_encoding = getattr(self, "_default_encoding", "utf-8")
        if "set-cookie" in response.headers:
            self.cookies.extract_cookies(response)
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url,
                            response.http_version, response.status_code, response.reason_phrase)
        return response


def make_async_client(base_url: str, headers: dict[str, str], max_concurrency: int,
                      timeout_s: float) -> httpx.AsyncClient:
    """The teacher's client: httpx API, one aiohttp pool of `max_concurrency` connections underneath."""
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency,
                          keepalive_expiry=KEEPALIVE_S)  # for httpx's own proxy transports, if any
    return TeacherHttpClient(base_url=base_url, headers=headers, limits=limits,
                             timeout=httpx.Timeout(timeout_s, connect=10.0),
                             transport=AiohttpTransport(max_concurrency))
