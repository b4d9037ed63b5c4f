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

Why, measured by bench/teacher_throughput.py --alternatives on 2 cores, the stub in its own process
answering after a fixed 1 s, the same requests for every client (HTTP level, no Teacher on top;
"steady" = % of the ideal rate C / latency once the start-up burst has spread, "whole" = over the
whole timed run; figures from a quiet moment of a machine shared with other work):

  client, its CPU per request                              C=256 steady   C=1024 steady / whole
  one httpx.AsyncClient, pool of C, 21-24 ms                       15 %            4 % (CPU-bound)
  C/4 httpx clients x 4 connections, 0.63 ms                       91 %           94 % / 79 %
  httpx-aiohttp package's transport, 0.32-0.34 ms                  99 %           96 % / 84 %
  httpx over AiohttpTransport, no short path, 0.28-0.33 ms         99 %           96 % / 86 %
  make_async_client (transport + short path), 0.20-0.22 ms         99 %           98 % / 89 %
  raw-socket client (the stub's own ceiling), 0.04 ms              99 %           98 % / 93 %

- httpx's own pool walks all C connections for every request: its CPU per request grows with C.
- Small sharded pools avoid the walk but keep httpcore's and h11's pure-Python cost, three times
  ours; on a busy machine that is what decides (measured under load: ~1.8 ms, 40 % at 256).
- The third-party `httpx-aiohttp` transport costs about what ours does without the short path, but
  maps connection resets and server disconnects to `ConnectTimeout`, which client.py would count as
  timeouts; ours maps each failure to the class httpx itself raises, and lets the short path hand it
  a pre-parsed URL. Bare aiohttp costs ~0.11 ms; the short path removes most of the ~0.15 ms httpx's
  pipeline adds on top. One aiohttp pool is enough: its cost per request does not grow with C
  (0.20-0.22 ms at 64, 256 and 1024).

What the transport guarantees, so that client.py's retry logic works unchanged: every failure
surfaces as an `httpx.TransportError` subclass — `ConnectTimeout` / `ReadTimeout` (both
`httpx.TimeoutException`) for timeouts, `ConnectError` when the server cannot be reached,
`ReadError` for resets and truncated bodies, `RemoteProtocolError` for a server that hangs up
without answering or speaks broken HTTP. httpx's `Timeout` maps onto aiohttp's: `connect` ->
`sock_connect`, `read` -> `sock_read` (the longest gap between two reads), `pool` + `connect` ->
`connect` (waiting for a pool slot plus connecting); aiohttp has no write timeout, a stalled write
ends at the read timeout. Bodies are read whole before `post()` returns (what non-streaming OpenAI
calls want); `client.stream()` works but buffers. Compressed bodies are decoded once, by httpx.
Proxies (`HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY`) stay httpx's: it mounts its own transports for
proxied URLs, and those requests take httpx's full path. Idle connections
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
                 verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True):
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._ssl_settings = (verify, cert, trust_env)  # httpx's meaning; the context is built on first use
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}
        self._closed = False

    def configure_tls(self, verify: ssl.SSLContext | str | bool = True, cert: Any = None,
                      trust_env: bool = True) -> None:
        """httpx's TLS settings (as AsyncClient takes them), applied when the pool opens."""
        self._ssl_settings = (verify, cert, trust_env)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        verify, cert, trust_env = self._ssl_settings
        context = httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)  # certifi, SSL_CERT_FILE
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                         keepalive_timeout=self._keepalive_s, ssl=context)
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
    """`httpx.AsyncClient` over `AiohttpTransport`, with a short path for plain `post(url, json=...)`.

    Takes AsyncClient's arguments. Without `transport=`, the default transport is an
    `AiohttpTransport` sized by `limits` (HTTP/1.1 only: with `http2=True` httpx's own is kept), while
    httpx still mounts its own transports for proxies (from `proxy=` or the environment).
    """

    def __init__(self, **kwargs: Any):
        limits = kwargs.get("limits") or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        keepalive = limits.keepalive_expiry if limits.keepalive_expiry is not None else KEEPALIVE_S
        self._aiohttp = AiohttpTransport(limits.max_connections or 0, keepalive)  # 0: no limit
        super().__init__(**kwargs)
        self._targets: dict[str, tuple[httpx.URL, yarl.URL] | None] = {}  # url arg -> target, None: full path
        self._targets_base = self.base_url

    def _init_transport(self, verify: Any = True, cert: Any = None, trust_env: bool = True, http1: bool = True,
                        http2: bool = False, limits: httpx.Limits = httpx.Limits(), transport: Any = None,
                        **kwargs: Any) -> httpx.AsyncBaseTransport:
        # httpx's hook for its default transport; it builds proxy transports separately.
        if transport is not None or http2:
            return super()._init_transport(verify=verify, cert=cert, trust_env=trust_env, http1=http1,
                                           http2=http2, limits=limits, transport=transport, **kwargs)
        self._aiohttp.configure_tls(verify, cert, trust_env)
        return self._aiohttp

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
                          keepalive_expiry=KEEPALIVE_S)
    return TeacherHttpClient(base_url=base_url, headers=headers, limits=limits,
                             timeout=httpx.Timeout(timeout_s, connect=10.0))
