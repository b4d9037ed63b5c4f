"""The teacher's HTTP client (datagen/teacher/transport.py): httpx behaviour on an aiohttp pool.

What matters to client.py: answers arrive intact, every failure is an httpx exception of the right
family (timeouts are `httpx.TimeoutException`, resets and refusals other `httpx.TransportError`s) so
that Teacher retries them under the right cause, the short path for `post(url, json=...)` sends
exactly what httpx's full path sends, and hundreds of requests in flight share one pool without
errors. The stub (tests/openai_stub.py) runs in-process; nothing here times anything.
"""
from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from datagen.errors import TeacherUnavailable
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig
from datagen.teacher.transport import AiohttpTransport, TeacherHttpClient, make_async_client
from openai_stub import StubConfig, StubServer

BODY = {"model": "stub-model", "prompt": "1. Name a colour.\n2.", "max_tokens": 30, "temperature": 0}


def _run(coro):
    return asyncio.run(coro)


def _client(srv, max_concurrency=8, timeout_s=10.0, headers=None):
    return make_async_client(srv.base_url, headers or {"Authorization": "Bearer sk-test"}, max_concurrency, timeout_s)


def _teacher(srv, **kw):
    cfg = TeacherConfig(base_url=srv.base_url, model="stub-model", backoff_base_s=0.01, **kw)
    return Teacher(cfg, cache=None)


async def _post_all(client, bodies):
    async with client:
        return await asyncio.gather(*(client.post("completions", json=b) for b in bodies))


def test_is_an_httpx_client_and_answers_match_plain_httpx():
    with StubServer() as srv:
        client = _client(srv)
        assert isinstance(client, httpx.AsyncClient)
        [ours] = _run(_post_all(client, [BODY]))
        [plain] = _run(_post_all(httpx.AsyncClient(base_url=srv.base_url), [BODY]))
        assert ours.status_code == 200 and ours.http_version == "HTTP/1.1" and ours.reason_phrase == "OK"
        assert ours.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"] != ""
        assert ours.headers["content-type"] == "application/json" and ours.headers["x-request-id"]
        assert ours.request.method == "POST" and str(ours.request.url) == srv.base_url + "/completions"
        assert ours.elapsed.total_seconds() >= 0


def test_short_path_sends_what_httpx_full_path_sends():
    """post(url, json=) takes the short path, request(...) httpx's pipeline: both must send what stock httpx sends."""
    async def both(client):
        async with client:
            short = await client.post("completions", json=BODY)
            full = await client.request("POST", "completions", json=BODY)
            models = await client.get("models")  # any other method: httpx's pipeline on our transport
            return short, full, models

    with StubServer() as srv:
        short, full, models = _run(both(_client(srv)))
        _run(_post_all(httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": "Bearer sk-test"}), [BODY]))
        a, b, plain = srv.requests_to("/v1/completions")  # short path, full path, stock httpx (httpcore)
        assert a["body"] == b["body"] == plain["body"] == json.dumps(BODY, ensure_ascii=False, separators=(",", ":"))
        assert a["headers"] == b["headers"] == plain["headers"]
        assert a["headers"]["authorization"] == "Bearer sk-test"
        assert a["headers"]["content-type"] == "application/json"
        assert a["headers"]["host"] == f"127.0.0.1:{srv.port}"
        assert short.json()["choices"] == full.json()["choices"]
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "stub-model"


def test_settings_the_short_path_cannot_honour_fall_back_to_httpx():
    async def go(client):
        async with client:
            client.cookies.set("session", "abc", domain="127.0.0.1")
            await client.post("completions", json=BODY)
            client.cookies.clear()
            client.params = {"api-version": "2024"}
            await client.post("completions", json=BODY)

    with StubServer() as srv:
        _run(go(_client(srv)))
        with_cookie, with_params = srv.requests_to("/v1/completions")
        assert with_cookie["headers"].get("cookie") == "session=abc"
        assert with_params["query"] == "api-version=2024"


def test_error_statuses_are_responses_not_exceptions():
    with StubServer(StubConfig(require_api_key="sk-right")) as srv:
        [resp] = _run(_post_all(_client(srv), [BODY]))
        assert resp.status_code == 401 and "API key" in resp.json()["error"]["message"]


def test_hang_surfaces_as_httpx_read_timeout():
    with StubServer(StubConfig(rate_timeout=1.0, timeout_hang_s=5)) as srv:
        with pytest.raises(httpx.ReadTimeout) as err:
            _run(_post_all(_client(srv, timeout_s=0.3), [BODY]))
        assert isinstance(err.value, httpx.TimeoutException) and err.value.request.method == "POST"


def test_reset_mid_body_surfaces_as_transport_error_not_timeout():
    with StubServer(StubConfig(rate_reset=1.0)) as srv:
        with pytest.raises(httpx.TransportError) as err:
            _run(_post_all(_client(srv), [BODY]))
        assert not isinstance(err.value, httpx.TimeoutException)
        assert isinstance(err.value, (httpx.ReadError, httpx.RemoteProtocolError))


def test_refused_connection_surfaces_as_connect_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_async_client(f"http://127.0.0.1:{port}/v1", {}, 4, 5.0)
    with pytest.raises(httpx.ConnectError):
        _run(_post_all(client, [BODY]))


def test_closed_client_refuses_like_httpx():
    async def go(client):
        await client.aclose()
        await client.post("completions", json=BODY)

    with StubServer() as srv:
        with pytest.raises(RuntimeError, match="closed"):
            _run(go(_client(srv)))


@pytest.mark.parametrize("fault, cause", [("timeout", "timeout"), ("reset", "connection")])
def test_teacher_retries_transport_faults_under_the_right_cause(fault, cause):
    config = StubConfig(**{f"rate_{fault}": 1.0}, faults_per_request_key=1, timeout_hang_s=5)
    with StubServer(config) as srv:
        t = _teacher(srv, timeout_s=0.5)

        async def go():
            async with t:
                return await asyncio.gather(*(t.complete(f"1. item {i}\n2.", {"max_tokens": 20}) for i in range(3)))

        done = _run(go())
        assert all(c.text for c in done)
        assert dict(t.usage.retries) == {cause: 3} and t.usage.requests == 3
        assert srv.stats["faults"][fault] == 3


def test_teacher_gives_up_on_an_endpoint_that_refuses_connections():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = Teacher(TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1,
                              backoff_base_s=0.01), cache=None)

    async def go():
        async with t:
            await t.complete("hello", {})

    with pytest.raises(TeacherUnavailable, match="connection"):
        _run(go())
    assert t.usage.attempts == 2 and dict(t.usage.retries) == {"connection": 2}  # each failed attempt counted


def test_300_in_flight_through_teacher_without_errors():
    with StubServer(StubConfig(latency_s=0.2)) as srv:
        t = _teacher(srv, max_concurrency=300)

        async def go():
            async with t:
                return await asyncio.gather(*(t.complete(f"1. task {i}\n2.", {"max_tokens": 20}) for i in range(600)))

        done = _run(go())
        stats = srv.stats
        assert len(done) == 600 and all(c.text for c in done) and len({c.key for c in done}) == 600
        assert not t.usage.retries and t.usage.requests == 600
        assert stats["max_in_flight"] == 300               # really 300 at once ...
        assert stats["connections_total"] <= 300           # ... over one pool that reuses its connections
        assert stats["by_status"] == {"200": 600}


def test_pool_never_opens_more_than_max_concurrency_connections():
    with StubServer(StubConfig(latency_s=0.05)) as srv:
        _run(_post_all(_client(srv, max_concurrency=5), [dict(BODY, prompt=f"p{i}") for i in range(40)]))
        assert srv.stats["max_connections_open"] <= 5 and srv.stats["requests_total"] == 40


def test_transport_usable_directly_in_a_plain_async_client():
    with StubServer() as srv:
        client = httpx.AsyncClient(base_url=srv.base_url, transport=AiohttpTransport(4))
        [resp] = _run(_post_all(client, [BODY]))
        assert resp.status_code == 200 and resp.json()["choices"][0]["text"]
        assert not isinstance(client, TeacherHttpClient)


def test_chunked_gzip_answer_is_decoded_once():
    """The stub always sends Content-Length and plain bodies; real servers also chunk and compress."""
    import gzip
    import threading

    payload = json.dumps({"choices": [{"text": "ünïcode " * 50, "finish_reason": "stop"}]}).encode()
    packed = gzip.compress(payload)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 100]), packed[i:i + 100]) for i in range(0, len(packed), 100))
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-encoding: gzip\r\n"
              b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve():
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += conn.recv(65536)
            seen.append(head)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = make_async_client(f"http://127.0.0.1:{server.getsockname()[1]}/v1", {}, 2, 5.0)
        [resp] = _run(_post_all(client, [BODY]))
    finally:
        thread.join(timeout=5)
        server.close()
    assert resp.status_code == 200 and resp.content == payload and resp.json()["choices"][0]["text"].startswith("ünï")
    assert b"accept-encoding: gzip" in seen[0].lower()


def test_environment_proxy_is_still_honoured(monkeypatch):
    """httpx routes proxied URLs through its own proxy transport; the short path must not bypass it."""
    with StubServer() as srv:  # the stub plays the proxy: it logs the absolute-form target and 404s it
        monkeypatch.setenv("HTTP_PROXY", srv.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        [resp] = _run(_post_all(make_async_client("http://teacher.invalid/v1", {}, 4, 5.0), [BODY]))
        assert resp.status_code == 404
        assert [r["path"] for r in srv.requests] == ["http://teacher.invalid/v1/completions"]
