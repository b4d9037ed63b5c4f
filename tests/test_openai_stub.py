"""The OpenAI stub must itself be right before other tests may lean on it.

These check the protocol surface (shapes, status codes, headers), that every
fault looks the way a client would meet it in the wild, the determinism the
fault-equivalence tests rely on, and that it holds 1000+ keep-alive connections.
"""
from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

try:
    from openai_stub import FAULT_KINDS, StubConfig, StubServer, default_responder
except ImportError:  # tests/ collected as a package
    from tests.openai_stub import FAULT_KINDS, StubConfig, StubServer, default_responder

STUB_PATH = Path(__file__).with_name("openai_stub.py")
CHAT = {"model": "stub-model", "messages": [{"role": "user", "content": "Explain tides."}]}


def chat(n: int = 0, **extra) -> dict:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": f"Question number {n}."}]}
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def srv():
    with StubServer(StubConfig()) as s:
        yield s


@pytest.fixture
def client(srv):
    srv.reset()
    with httpx.Client(base_url=srv.base_url, timeout=5) as c:
        yield c


def stub(**cfg) -> StubServer:
    return StubServer(StubConfig(**cfg))


# --------------------------------------------------------------------------- shapes


def test_chat_completion_shape_and_n(client):
    r = client.post("/chat/completions", json=chat(n=3) | {"n": 3})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    d = r.json()
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-")
    assert isinstance(d["created"], int) and d["model"] == "stub-model"
    assert [c["index"] for c in d["choices"]] == [0, 1, 2]
    for c in d["choices"]:
        assert c["message"]["role"] == "assistant" and c["message"]["content"]
        assert c["finish_reason"] == "stop"
    assert len({c["message"]["content"] for c in d["choices"]}) == 3, "n choices should differ"
    u = d["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["completion_tokens"] > 0


def test_text_completion_continues_numbered_list(client):
    prompt = "Come up with a series of tasks:\n1. Write a poem about cats.\n2. Explain gravity.\n3."
    d = client.post("/completions", json={"model": "m", "prompt": prompt}).json()
    assert d["object"] == "text_completion"
    text = d["choices"][0]["text"]
    assert text.startswith(" ") and "\n4. " in text
    assert "text" in d["choices"][0] and "message" not in d["choices"][0]
    # "Task 7:" style is continued in its own style
    text = client.post("/completions", json={"model": "m", "prompt": "Task 7:"}).json()["choices"][0]["text"]
    assert "\nTask 8: " in text


def test_completion_stop_and_max_tokens(client):
    prompt = "Tasks:\n1. Do a thing.\n2."
    full = client.post("/completions", json={"model": "m", "prompt": prompt}).json()["choices"][0]["text"]
    cut = client.post("/completions", json={"model": "m", "prompt": prompt, "stop": ["\n4."]}).json()
    assert "\n4." not in cut["choices"][0]["text"] and full.startswith(cut["choices"][0]["text"])
    short = client.post("/chat/completions", json=chat(1, max_tokens=3)).json()["choices"][0]
    assert short["finish_reason"] == "length" and len(short["message"]["content"].split()) == 3


def test_same_request_same_content_different_request_different(client):
    a = client.post("/chat/completions", json=chat(1)).json()
    b = client.post("/chat/completions", json=chat(1)).json()
    c = client.post("/chat/completions", json=chat(2)).json()
    # key order must not matter: content is a function of the request, not its bytes
    reordered = client.post("/chat/completions",
                            content=json.dumps(dict(reversed(list(chat(1).items())))),
                            headers={"content-type": "application/json"}).json()
    text = lambda d: d["choices"][0]["message"]["content"]
    assert text(a) == text(b) == text(reordered) != text(c)
    assert a["id"] != b["id"]


def test_models_health_and_unknown_route(client, srv):
    models = client.get("/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert client.get("/models/stub-model").json()["id"] == "stub-model"
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    r = client.post("/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_bad_requests_are_openai_errors(client):
    r = client.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "message" in r.json()["error"]
    assert client.post("/chat/completions", json={"messages": []}).status_code == 400
    assert client.post("/chat/completions", json={"model": "m", "messages": "hi"}).status_code == 400
    assert client.post("/chat/completions", json=chat(n=1) | {"n": 0}).status_code == 400
    assert client.post("/completions", json={"model": "m"}).status_code == 400
    assert client.post("/chat/completions", json=chat(stream=True)).status_code == 400


def test_pluggable_responder_str_list_async_and_raising():
    calls = []

    def fixed(kind, body):
        calls.append(kind)
        return "hello" if kind == "chat" else ["a", "b"]

    async def slow(kind, body):
        await asyncio.sleep(0.01)
        return "async " + body["model"]

    with stub(responder=fixed) as s, httpx.Client(base_url=s.base_url) as c:
        d = c.post("/chat/completions", json=chat(n=2) | {"n": 2}).json()
        assert [x["message"]["content"] for x in d["choices"]] == ["hello", "hello"]
        d = c.post("/completions", json={"model": "m", "prompt": "x"}).json()
        assert [x["text"] for x in d["choices"]] == ["a", "b"]  # a list is taken as-is
        assert calls == ["chat", "completion"]
        s.config.responder = slow
        d = c.post("/chat/completions", json=chat()).json()
        assert d["choices"][0]["message"]["content"] == "async stub-model"
        s.config.responder = lambda kind, body: 1 / 0
        r = c.post("/chat/completions", json=chat())
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]["message"]
        assert s.stats["responder_errors"] == 1


def test_default_responder_is_pure():
    body = chat(5) | {"n": 2}
    assert default_responder("chat", body) == default_responder("chat", json.loads(json.dumps(body)))
    multi = default_responder("completion", {"model": "m", "prompt": ["1.", "2."], "n": 2})
    assert len(multi) == 4


# --------------------------------------------------------------------------- auth, models, rate limits


def test_api_key_and_model_checks():
    with stub(require_api_key="sk-test-123", models=["teacher-a"]) as s, \
            httpx.Client(base_url=s.base_url) as c:
        body = {"model": "teacher-a", "messages": [{"role": "user", "content": "hi"}]}
        r = c.post("/chat/completions", json=body)
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        r = c.post("/chat/completions", json=body, headers={"Authorization": "Bearer sk-wrong-999"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert "sk-wrong-999" not in r.text  # the stub never echoes a presented key
        good = {"Authorization": "Bearer sk-test-123"}
        assert c.post("/chat/completions", json=body, headers=good).status_code == 200
        r = c.post("/chat/completions", json=body | {"model": "gpt-x"}, headers=good)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert [m["id"] for m in c.get("/models", headers=good).json()["data"]] == ["teacher-a"]
        # the log shows where the key travelled: only in the Authorization header
        logged = s.requests
        assert logged[2]["headers"]["authorization"] == "Bearer sk-test-123"
        assert not any("sk-test-123" in e["body"] or "sk-test-123" in e["path"] + e["query"] for e in logged)
        assert s.stats["by_status"] == {"401": 2, "200": 2, "404": 1}


def test_ratelimit_headers_and_enforcement():
    with stub(ratelimit_headers=True, ratelimit_requests=3, ratelimit_enforce=True) as s, \
            httpx.Client(base_url=s.base_url) as c:
        remaining = []
        for i in range(3):
            r = c.post("/chat/completions", json=chat(i))
            assert r.status_code == 200
            remaining.append(int(r.headers["x-ratelimit-remaining-requests"]))
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert int(r.headers["x-ratelimit-remaining-tokens"]) < int(r.headers["x-ratelimit-limit-tokens"])
            assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert remaining == [2, 1, 0]
        r = c.post("/chat/completions", json=chat(9))
        assert r.status_code == 429 and float(r.headers["retry-after"]) > 0
        assert s.stats["faults"]["ratelimit"] == 1


# --------------------------------------------------------------------------- faults


def test_429_carries_retry_after():
    with stub(rate_429=1.0, retry_after_s=2.5) as s, httpx.Client(base_url=s.base_url) as c:
        r = c.post("/chat/completions", json=chat())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "3" and r.headers["retry-after-ms"] == "2500"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert s.stats["faults"]["429"] == 1 and s.requests[0]["fault"] == "429"


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors(code):
    with stub(**{f"rate_{code}": 1.0}) as s, httpx.Client(base_url=s.base_url) as c:
        r = c.post("/completions", json={"model": "m", "prompt": "x"})
        assert r.status_code == code
        if code == 502:
            assert r.headers["content-type"] == "text/html"  # proxies answer 502 in HTML
        else:
            assert r.json()["error"]["type"] == "server_error"


def test_timeout_hangs_past_client_timeout_then_frees():
    with stub(rate_timeout=1.0, timeout_hang_s=5) as s, httpx.Client(base_url=s.base_url, timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.post("/chat/completions", json=chat())
        assert time.monotonic() - t0 < 2
        deadline = time.monotonic() + 2
        while s.stats["connections_open"] and time.monotonic() < deadline:  # noticed the client leaving
            time.sleep(0.02)
        st = s.stats
        assert st["connections_open"] == 0 and st["faults"]["timeout"] == 1 and st["by_status"] == {"0": 1}
    with stub(rate_timeout=1.0, timeout_hang_s=0.2) as s, httpx.Client(base_url=s.base_url, timeout=3) as c, \
            pytest.raises(httpx.RemoteProtocolError):  # hang elapsed: closed without a response
        c.post("/chat/completions", json=chat())


def test_reset_breaks_the_body():
    with stub(rate_reset=1.0) as s, httpx.Client(base_url=s.base_url) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.post("/chat/completions", json=chat())
        assert s.stats["faults"]["reset"] == 1


def test_invalid_json_empty_and_length():
    with stub(rate_invalid_json=1.0) as s, httpx.Client(base_url=s.base_url) as c:
        r = c.post("/chat/completions", json=chat())
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            r.json()
    with stub(rate_empty=1.0) as s, httpx.Client(base_url=s.base_url) as c:
        d = c.post("/chat/completions", json=chat()).json()
        assert d["choices"][0]["message"]["content"] == "" and d["usage"]["completion_tokens"] == 0
    with stub(rate_length=1.0) as s, httpx.Client(base_url=s.base_url) as c:
        full = default_responder("chat", chat())[0]
        d = c.post("/chat/completions", json=chat()).json()
        assert d["choices"][0]["finish_reason"] == "length"
        cut = d["choices"][0]["message"]["content"]
        assert full.startswith(cut) and 0 < len(cut) < len(full)


def test_rates_validated():
    with pytest.raises(ValueError):
        StubServer(StubConfig(rate_500=0.7, rate_429=0.7))
    with pytest.raises(ValueError):
        StubServer(StubConfig(rate_empty=1.5))


def test_random_faults_follow_rates_and_seed():
    def run(seed):
        with stub(rate_429=0.2, rate_500=0.2, seed=seed) as s, httpx.Client(base_url=s.base_url) as c:
            return [c.post("/chat/completions", json=chat(i)).status_code for i in range(300)]

    a, b, other = run(7), run(7), run(8)
    assert a == b and a != other
    assert 40 <= a.count(429) <= 80 and 40 <= a.count(500) <= 80


def test_faults_per_request_key_then_same_result_as_clean_run():
    bodies = [chat(i) for i in range(60)]
    with stub() as clean, httpx.Client(base_url=clean.base_url) as c:
        expected = [c.post("/chat/completions", json=b).json()["choices"][0]["message"]["content"] for b in bodies]

    with stub(rate_500=0.15, rate_429=0.15, faults_per_request_key=2, seed=3) as s, \
            httpx.Client(base_url=s.base_url) as c:
        got, attempts = [], []
        for b in bodies:
            for attempt in range(1, 10):
                r = c.post("/chat/completions", json=b)
                if r.status_code == 200:
                    got.append(r.json()["choices"][0]["message"]["content"])
                    attempts.append(attempt)
                    break
        assert got == expected
        assert set(attempts) == {1, 3}, "faulty requests fail exactly k=2 times"
        assert 8 <= attempts.count(3) <= 30  # about 30% of 60
        first = attempts
        # the choice of faulty requests does not depend on arrival order
        s.reset()
        again = []
        for b in reversed(bodies):
            n = 1
            while c.post("/chat/completions", json=b).status_code != 200:
                n += 1
            again.append(n)
        assert again[::-1] == first


# --------------------------------------------------------------------------- observability and transport


def test_counters_and_log(client, srv):
    for i in range(3):
        client.post("/chat/completions", json=chat(i), headers={"x-trace": f"t{i}"})
    client.get("/models")
    st = srv.stats
    assert st["requests_total"] == 4
    assert st["by_path"] == {"/v1/chat/completions": 3, "/v1/models": 1}
    assert st["connections_total"] == 1, "httpx reused one keep-alive connection"
    assert httpx.get(srv.url + "/stats").json()["requests_total"] == 4, "admin polls are not counted"
    log = srv.requests
    assert [e["headers"]["x-trace"] for e in log[:3]] == ["t0", "t1", "t2"]
    assert json.loads(log[0]["body"]) == chat(0) and log[0]["status"] == 200
    srv.reset()
    assert srv.stats["requests_total"] == 0 and srv.requests == []


def test_log_caps():
    with stub(log_max_requests=5, log_max_body_chars=50) as s, httpx.Client(base_url=s.base_url) as c:
        for i in range(8):
            c.post("/chat/completions", json=chat(i, padding="x" * 200))
        log = s.requests
        assert len(log) == 5 and log[0]["seq"] == 4
        assert len(log[0]["body"]) == 50 and log[0]["body_truncated"]


def test_max_in_flight_counts_concurrency():
    async def go(url):
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50)) as c:
            rs = await asyncio.gather(*(c.post("/chat/completions", json=chat(i)) for i in range(40)))
        assert all(r.status_code == 200 for r in rs)

    with stub(latency_s=0.3) as s:
        t0 = time.monotonic()
        asyncio.run(go(s.base_url))
        assert time.monotonic() - t0 < 2
        assert s.stats["max_in_flight"] == 40


def test_chunked_body_and_pipelining(srv):
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        body = json.dumps(chat(1)).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
                     + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read()  # both answers, then the server closes as asked
        writer.close()
        return data

    data = asyncio.run(go())
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.rstrip().endswith(b'{"status": "ok"}')


def test_over_1000_concurrent_keepalive_connections():
    n_conns = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n_conns + 200  # client and server ends share this process
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n")

    async def conn(port, i, gate):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await gate.wait()  # open all connections first, then fire at once
        for j in range(2):  # two requests on the same connection: keep-alive
            body = json.dumps(chat(i * 10 + j)).encode()
            writer.write(req % len(body) + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200")
        writer.close()

    async def go(port):
        gate = asyncio.Event()
        tasks = [asyncio.create_task(conn(port, i, gate)) for i in range(n_conns)]
        await asyncio.sleep(0.5)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)

    with stub(latency_s=0.5) as s:
        asyncio.run(go(s.port))
        st = s.stats
    assert st["connections_total"] == n_conns and st["requests_total"] == 2 * n_conns
    assert st["max_connections_open"] == n_conns and st["max_in_flight"] > 1000


# --------------------------------------------------------------------------- batch API


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _wait_batch(c, bid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = c.get(f"/batches/{bid}").json()
        if b["status"] in ("completed", "failed", "cancelled"):
            return b
        time.sleep(0.05)
    raise AssertionError(f"batch {bid} stuck in {b['status']}")


def test_batch_roundtrip_matches_sync_answers():
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat(i)} for i in range(5)]
    rows.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}})
    with stub(batch_delay_s=0.2, models=["stub-model"]) as s, httpx.Client(base_url=s.base_url) as c:
        f = c.post("/files", files={"file": ("in.jsonl", _jsonl(rows))}, data={"purpose": "batch"}).json()
        assert f["object"] == "file" and f["purpose"] == "batch" and f["bytes"] == len(_jsonl(rows))
        b = c.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                     "completion_window": "24h", "metadata": {"run": "t"}}).json()
        assert b["object"] == "batch" and b["status"] == "validating" and b["metadata"] == {"run": "t"}
        time.sleep(0.05)
        assert c.get(f"/batches/{b['id']}").json()["status"] == "in_progress"
        b = _wait_batch(c, b["id"])
        assert b["status"] == "completed" and b["request_counts"] == {"total": 6, "completed": 5, "failed": 1}
        out = [json.loads(x) for x in c.get(f"/files/{b['output_file_id']}/content").text.splitlines()]
        assert [o["custom_id"] for o in out] == [f"r{i}" for i in range(5)]
        for i, o in enumerate(out):
            assert o["id"].startswith("batch_req_") and o["response"]["status_code"] == 200
            sync = c.post("/chat/completions", json=chat(i)).json()
            assert o["response"]["body"]["choices"][0]["message"] == sync["choices"][0]["message"]
            assert o["response"]["body"]["object"] == "chat.completion"
        err = [json.loads(x) for x in c.get(f"/files/{b['error_file_id']}/content").text.splitlines()]
        assert err[0]["custom_id"] == "bad" and err[0]["response"]["status_code"] == 404
        assert c.get("/batches").json()["data"][0]["id"] == b["id"]


def test_batch_raw_upload_invalid_lines_cancel_and_errors():
    with stub(batch_delay_s=5) as s, httpx.Client(base_url=s.base_url) as c:
        good = _jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/completions",
                        "body": {"model": "m", "prompt": "1."}}])
        f = c.post("/files?purpose=batch", content=good, headers={"content-type": "application/jsonl"}).json()
        assert c.get(f"/files/{f['id']}/content").content == good
        b = c.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/completions"}).json()
        time.sleep(0.05)
        r = c.post(f"/batches/{b['id']}/cancel")
        assert r.json()["status"] == "cancelling"
        assert c.get(f"/batches/{b['id']}").json()["status"] == "cancelled"
        assert c.post(f"/batches/{b['id']}/cancel").status_code == 409

        broken = c.post("/files", files={"file": ("x.jsonl", b'{"custom_id": "a"\nnot json\n')},
                        data={"purpose": "batch"}).json()
        b = c.post("/batches", json={"input_file_id": broken["id"], "endpoint": "/v1/completions"}).json()
        b = _wait_batch(c, b["id"])
        assert b["status"] == "failed" and b["errors"]["data"][0]["code"] == "invalid_json_line"

        missing = {"input_file_id": "file-missing", "endpoint": "/v1/completions"}
        assert c.post("/batches", json=missing).status_code == 400
        assert c.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/embeddings"}).status_code == 400
        assert c.get("/batches/batch_nope").status_code == 404
        assert c.delete(f"/files/{f['id']}").json()["deleted"] is True
        assert c.get(f"/files/{f['id']}").status_code == 404


# --------------------------------------------------------------------------- subprocess mode


def test_subprocess_mode_ready_stats_config_and_sigterm():
    proc = subprocess.Popen([sys.executable, str(STUB_PATH), "--port", "0", "--latency", "0", "--rate-429", "0",
                             "--models", "a,b", "--no-ratelimit-headers"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1"), line
        base = line.split()[1]
        root = base.removesuffix("/v1")
        with httpx.Client(base_url=base) as c:
            assert [m["id"] for m in c.get("/models").json()["data"]] == ["a", "b"]
            assert c.post("/chat/completions", json={"model": "a", "messages": [{"role": "user", "content": "q"}]}
                          ).status_code == 200
            cfg = httpx.post(root + "/stub/config", json={"rate_503": 1.0}).json()
            assert cfg["rate_503"] == 1.0 and cfg["models"] == ["a", "b"]
            assert httpx.post(root + "/stub/config", json={"rate_500": 0.5}).status_code == 400  # sum > 1
            assert httpx.post(root + "/stub/config", json={"bogus": 1}).status_code == 400
            assert c.post("/completions", json={"model": "b", "prompt": "x"}).status_code == 503
            st = httpx.get(root + "/stats").json()
            assert st["requests_total"] == 3 and st["faults"]["503"] == 1
            assert len(httpx.get(root + "/stub/requests").json()) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_flags_cover_config():
    out = subprocess.run([sys.executable, str(STUB_PATH), "--help"], capture_output=True, text=True, check=True).stdout
    for kind in FAULT_KINDS:
        assert f"--rate-{kind.replace('_', '-')}" in out
    for flag in ("--latency", "--faults-per-request-key", "--require-api-key", "--retry-after", "--timeout-hang",
                 "--batch-delay", "--seed"):
        assert flag in out


# --------------------------------------------------------------------------- server personalities


def test_models_listing_can_play_llama_cpp_vllm_or_no_listing():
    llama = StubConfig(models=["/models/a.gguf"], any_model=True, model_fields={"meta": {"n_params": 135}},
                       models_created_now=True)
    with StubServer(llama) as s, httpx.Client(base_url=s.base_url) as c:
        [entry] = c.get("/models").json()["data"]
        assert entry["id"] == "/models/a.gguf" and entry["meta"] == {"n_params": 135}
        assert abs(entry["created"] - time.time()) < 60          # stamped now, like llama.cpp and vLLM
        # any name is served, as llama.cpp serves its one file whatever `model` says
        assert c.post("/completions", json={"model": "any", "prompt": "x"}).status_code == 200
    with StubServer(StubConfig(models=["a"])) as s, httpx.Client(base_url=s.base_url) as c:
        assert c.get("/models").json()["data"][0]["created"] == 1700000000
        assert c.post("/completions", json={"model": "any", "prompt": "x"}).status_code == 404
    with StubServer(StubConfig(models_status=404)) as s, httpx.Client(base_url=s.base_url) as c:
        assert c.get("/models").status_code == 404 and c.get("/models/stub-model").status_code == 404
        assert c.post("/completions", json={"model": "m", "prompt": "x"}).status_code == 200


def test_html_page_answers_every_path_with_200_text_html():
    page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"
    with StubServer(StubConfig(html_page=page)) as s, httpx.Client(base_url=s.base_url) as c:
        for r in (c.get("/models"), c.post("/completions", json={"model": "m", "prompt": "x"}),
                  httpx.get(s.url + "/anything")):
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and r.text == page
        assert httpx.get(s.url + "/stats").json()["requests_total"] == 3      # admin paths stay JSON
