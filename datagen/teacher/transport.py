"""How the teacher's HTTP client is built: one place to tune connection pooling for throughput.

The teacher keeps up to `max_concurrency` requests in flight; against a slow OpenAI-compatible server
(a second or more per answer) that is hundreds to thousands of open connections, and what limits the
request rate is the client's CPU cost per request, not the network.

Design: the API stays `httpx.AsyncClient` (client.py and anyone else keep calling `post()`,
`aclose()` and reading `httpx.Response`s; env proxies, base_url, default headers, auth and timeouts
keep httpx's meaning), but its transport is `AiohttpTransport` below: aiohttp's connection pool and
C HTTP parser carry the bytes, each body is read whole, and an `httpx.Response` is built from it.

Why, measured on 2 cores against tests/openai_stub.py in its own process answering after a fixed
1 s (bench/teacher_throughput.py; the figures are steady state after a warm-up wave, the machine
shared with other work, so best-of-several):

- httpx's own transport (httpcore + h11) with one pool of C connections: every request walks the
  whole pool to assign connections, so the cost per request grows with C: ~10-15 ms CPU per request
  and ~10-15 % of the ideal rate (C / latency) at 256 in flight, worse at 1024.
- sharding requests over C/4 httpx clients of 4 connections each removes that walk but keeps
  httpcore's and h11's pure-Python per-request cost (~1.5-2 ms CPU): ~40-80 % of ideal at 256,
  ~20 % at 1024, and over the 1 ms/request budget.
- httpx over this transport: ~0.3-0.45 ms CPU per request, whatever C is, because aiohttp's pool
  hands out a free connection in O(1) and parses in C; it reaches the rate a bare aiohttp session
  or a raw-socket client gets against the same server, within a few percent (see the bench).
  The httpx layer above it costs ~0.1 ms per request: cheap enough to keep httpx as the API.
  One pool is enough; sharding over several aiohttp sessions measured no better.

  The third-party `httpx-aiohttp` package does the same job, but streams each body through two
  wrappers (slower here) and maps connection resets and server disconnects to `ConnectTimeout`,
  which client.py would count as timeouts; this module maps them to the httpx classes httpx itself
  raises (ReadError, RemoteProtocolError, ...), so retries are attributed to the right cause.

What the transport guarantees, so that client.py's retry logic works unchanged: every failure
surfaces as an `httpx.TransportError` subclass — `ConnectTimeout` / `ReadTimeout` (both
`httpx.TimeoutException`) for timeouts, `ConnectError` when the server cannot be reached,
`ReadError` for resets and truncated bodies, `RemoteProtocolError` for a server that hangs up
without answering or speaks broken HTTP. httpx's `Timeout` maps onto aiohttp's: `connect` ->
`sock_connect`, `read` -> `sock_read` (the longest gap between two reads), `pool` -> `connect`
(waiting for a pool slot plus connecting); aiohttp has no write timeout, a stalled write ends at the
read timeout. Response bodies are read whole before `post()` returns (what non-streaming OpenAI
calls want); `client.stream()` works but buffers. Compressed bodies are decoded once, by httpx.
Idle connections are kept 4 s, under the 5 s keep-alive of uvicorn-based servers (vLLM, LiteLLM),
so a reused connection is rarely one the server is closing.

The aiohttp session is created on the first request, inside the event loop that uses it, and is
bound to that loop (as the Teacher's semaphore is).
"""
from __future__ import annotations

import asyncio
import ssl

import aiohttp
import httpx
import yarl

# Under the 5 s default keep-alive of uvicorn (vLLM, LiteLLM), so we drop an idle connection
# before the server does and a POST rarely races the server's close.
KEEPALIVE_S = 4.0


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
        # httpx has already built every header it wants sent; aiohttp must not add its own.
        # Proxies from the environment are httpx's business (it mounts its own transports for them).
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
        session = self._session or self._open_session()
        try:
            data: bytes | None = request.content
        except httpx.RequestNotRead:  # a streaming request body: gather it, OpenAI bodies are small
            data = b"".join([chunk async for chunk in request.stream])
        try:
            async with session.request(
                    request.method, yarl.URL(str(request.url), encoded=True),
                    headers=request.headers.multi_items(), data=data or None,
                    allow_redirects=False, compress=False,
                    timeout=self._timeout(request.extensions.get("timeout", {}))) as resp:
                content = await resp.read()
                status, raw_headers, reason, version = resp.status, resp.raw_headers, resp.reason, resp.version
        except aiohttp.ClientError as e:
            raise _as_httpx_error(e, request) from e
        except asyncio.TimeoutError as e:  # aiohttp's own timeouts are ClientErrors; this is belt and braces
            raise httpx.ReadTimeout(str(e) or "timed out", request=request) from e
        except OSError as e:  # a socket error aiohttp did not wrap
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        extensions = {"http_version": b"HTTP/%d.%d" % (version.major, version.minor) if version else b"HTTP/1.1"}
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
    elif isinstance(e, aiohttp.ClientConnectionError):  # ClientOSError, connection reset while writing
        cls = httpx.ReadError
    else:
        cls = httpx.TransportError
    return cls(message, request=request)


def make_async_client(base_url: str, headers: dict[str, str], max_concurrency: int,
                      timeout_s: float) -> httpx.AsyncClient:
    """The teacher's client: httpx API, aiohttp pool of `max_concurrency` connections underneath."""
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency,
                          keepalive_expiry=KEEPALIVE_S)  # used by httpx's own proxy transports, if any
    return httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                             timeout=httpx.Timeout(timeout_s, connect=10.0),
                             transport=AiohttpTransport(max_concurrency))
