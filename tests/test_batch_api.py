"""`--batch-api`: submit, poll, collect, and resume by batch id after a crash, against the stub server.

The stub answers batch lines with the same deterministic text its interactive endpoint gives for the
same body, so "the batch returned the right body" is checked against a direct call, not a fixture.
It proves protocol handling and crash safety, nothing about generation quality.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from datagen.errors import DatagenError
from datagen.teacher.batch import BatchConfig, BatchQueue, BatchRequest, BatchRunner
from datagen.teacher.cache import request_key
from datagen.teacher.config import TeacherConfig
from datagen.teacher.transport import make_async_client
from openai_stub import StubConfig, StubServer

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-BATCH-FAKE-KEY-0123456789abcdef"
FAST = dict(poll_interval_s=0.02, poll_max_s=0.1, backoff_base_s=0.01, backoff_max_s=0.05)
pytestmark = pytest.mark.timeout(60)


def _request(i: int, kind: str = "chat", model: str = "stub-model") -> BatchRequest:
    if kind == "chat":
        path, body = "/v1/chat/completions", {"model": model, "max_tokens": 40,
                                              "messages": [{"role": "user", "content": f"Explain idea number {i}."}]}
    else:
        path, body = "/v1/completions", {"model": model, "max_tokens": 40, "prompt": f"1. Task {i}\n2."}
    return BatchRequest(request_key({"endpoint": path, "sample": 0, **body}), path, body)


def _runner(srv: StubServer, tmp_path: Path, api_key: str | None = None, client=None, **cfg) -> BatchRunner:
    hook = cfg.pop("on_submitted", None)
    return BatchRunner(srv.base_url, tmp_path / "batches.sqlite", api_key=api_key, client=client,
                       config=BatchConfig(**{**FAST, **cfg}), on_submitted=hook)


async def _run(runner: BatchRunner, requests):
    async with runner:
        return await runner.run(requests)


def _stub(**kw) -> StubServer:
    return StubServer(StubConfig(**{"batch_delay_s": 0.05, **kw}))


def _batch_posts(srv: StubServer) -> list[dict]:
    return [r for r in srv.requests_to("/v1/batches") if r["method"] == "POST"]


def _uploaded_ids(srv: StubServer) -> list[list[str]]:
    """custom_ids of every uploaded batch input file, in upload order."""
    files = [f for f in srv.app.files.values() if f["meta"]["purpose"] == "batch"]
    files.sort(key=lambda f: f["meta"]["id"])
    return [[json.loads(x)["custom_id"] for x in f["content"].splitlines()] for f in files]


def _text(body: dict) -> str:
    choice = body["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


class _Crash(Exception):
    """Stands in for the process dying right after the batch id reached the state file."""


def _crash(batch_id, custom_ids):
    raise _Crash(batch_id)


def _state_rows(tmp_path: Path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "batches.sqlite") as db:
        return db.execute("SELECT batch_id, state, api_status FROM batch_batches ORDER BY created").fetchall()


# ---------------------------------------------------------------------------------------------- happy path

@pytest.mark.parametrize("transport", ["own httpx client", "teacher's aiohttp client"])
def test_batch_answers_each_request_with_the_body_the_endpoint_gives(tmp_path, transport):
    reqs = [_request(i) for i in range(20)]
    with _stub() as srv:
        client = None
        if transport != "own httpx client":
            client = make_async_client(srv.base_url, {}, 4, 30.0)
        results = asyncio.run(_run(_runner(srv, tmp_path, client=client), reqs))
        if client is not None:
            asyncio.run(client.aclose())
        assert [r.custom_id for r in results] == [r.custom_id for r in reqs]
        assert all(r.ok for r in results)
        direct = [httpx.post(srv.base_url + "/chat/completions", json=r.body).json() for r in reqs]
        assert [_text(r.body) for r in results] == [_text(d) for d in direct]
        assert results[0].body["object"] == "chat.completion"

        assert len(_batch_posts(srv)) == 1 and _uploaded_ids(srv) == [[r.custom_id for r in reqs]]
        [upload] = [r for r in srv.requests_to("/v1/files") if r["method"] == "POST"]
        assert upload["headers"]["content-type"].startswith("multipart/form-data")
        [bid] = [b for b in srv.app.batches]
        line = json.loads(next(iter(srv.app.files.values()))["content"].splitlines()[0])
        assert line == {"custom_id": reqs[0].custom_id, "method": "POST", "url": "/v1/chat/completions",
                        "body": reqs[0].body}
        assert srv.app.batches[bid]["completion_window"] == "24h"
        assert _state_rows(tmp_path) == [(bid, "done", "completed")]

        before = len(srv.requests)
        again = asyncio.run(_run(_runner(srv, tmp_path), reqs))
        assert len(srv.requests) == before                    # collected answers cost no call
        assert [r.body for r in again] == [r.body for r in results]


def test_queue_gathers_concurrent_submits_into_one_batch(tmp_path):
    reqs = [_request(i) for i in range(12)] + [_request(0)]   # a duplicate shares its line and its answer

    async def go(srv):
        async with _runner(srv, tmp_path) as runner:
            queue = BatchQueue(runner, linger_s=0.05)
            out = await asyncio.gather(*(queue.submit(r) for r in reqs))
            await queue.aclose()
            return out

    with _stub() as srv:
        results = asyncio.run(go(srv))
        assert len(_batch_posts(srv)) == 1 and len(_uploaded_ids(srv)[0]) == 12
    assert all(r.ok for r in results) and results[-1].body == results[0].body


def test_overlapping_runs_share_a_batch_instead_of_submitting_twice(tmp_path):
    a, b = [_request(i) for i in range(10)], [_request(i) for i in range(5, 15)]

    async def both(srv):
        async with _runner(srv, tmp_path) as runner:
            return await asyncio.gather(runner.run(a), runner.run(b))

    with _stub() as srv:
        ra, rb = asyncio.run(both(srv))
        assert all(r.ok for r in ra + rb) and [r.body for r in ra[5:]] == [r.body for r in rb[:5]]
        assert _uploaded_ids(srv) == [[r.custom_id for r in a], [r.custom_id for r in b[5:]]]


# ---------------------------------------------------------------------------------------------- resume

def test_resume_after_crash_polls_the_recorded_batch_without_resubmitting(tmp_path):
    first = [_request(i) for i in range(10)]
    with _stub(batch_delay_s=0.3) as srv:
        with pytest.raises(_Crash) as crashed:
            asyncio.run(_run(_runner(srv, tmp_path, on_submitted=_crash), first))
        bid = str(crashed.value)
        assert _state_rows(tmp_path) == [(bid, "pending", "validating")]
        assert len(_batch_posts(srv)) == 1

        later = first + [_request(i) for i in range(10, 15)]   # a rerun that also asks for new things
        results = asyncio.run(_run(_runner(srv, tmp_path), later))
        assert all(r.ok for r in results) and [r.custom_id for r in results] == [r.custom_id for r in later]
        assert any(r["path"] == f"/v1/batches/{bid}" for r in srv.requests)       # it polled the old id
        assert len(_batch_posts(srv)) == 2                                          # one more: the new 5 only
        assert _uploaded_ids(srv) == [[r.custom_id for r in first], [r.custom_id for r in later[10:]]]
        assert [s for _, s, _ in _state_rows(tmp_path)] == ["done", "done"]


def test_cancelled_run_resumes_the_same_batch(tmp_path):
    reqs = [_request(i) for i in range(6)]

    async def cancel_while_polling(srv):
        submitted = asyncio.Event()
        runner = _runner(srv, tmp_path, on_submitted=lambda *_: submitted.set())
        task = asyncio.create_task(_run(runner, reqs))
        await submitted.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with _stub(batch_delay_s=0.5) as srv:
        asyncio.run(cancel_while_polling(srv))
        results = asyncio.run(_run(_runner(srv, tmp_path), reqs))
        assert all(r.ok for r in results) and len(_batch_posts(srv)) == 1


_CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from test_batch_api import _request, FAST
    from datagen.teacher.batch import BatchConfig, BatchRunner

    async def main():
        async with BatchRunner({url!r}, {state!r}, api_key={key!r}, config=BatchConfig(**FAST)) as r:
            await r.run([_request(i) for i in range(8)])

    asyncio.run(main())
""")


@pytest.mark.parametrize("point", ["batch.created", "batch.submitted", "batch.collected"])
def test_killed_process_never_pays_for_a_batch_twice(tmp_path, point):
    """SIGKILL at each step after the create call; `batch.created` is the nasty one: the server has the
    batch but the state file has no id yet, so the rerun must find it by the token in its metadata."""
    reqs = [_request(i) for i in range(8)]
    with _stub(require_api_key=KEY) as srv:
        script = _CHILD.format(tests=str(REPO / "tests"), url=srv.base_url, state=str(tmp_path / "batches.sqlite"),
                               key=KEY)
        p = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=50,
                           env={**os.environ, "DATAGEN_CRASH_AT": point})
        assert p.returncode == -9, p.stderr[-2000:]
        results = asyncio.run(_run(_runner(srv, tmp_path, api_key=KEY), reqs))
        assert all(r.ok for r in results)
        assert srv.stats["batches_created"] == 1
    assert [s for _, s, _ in _state_rows(tmp_path)] == ["done"]


# ---------------------------------------------------------------------------------------------- failures

def test_lines_that_fail_inside_a_batch_are_reported_per_custom_id(tmp_path):
    reqs = [_request(i) for i in range(20)]
    with _stub(batch_error_rate=0.3) as srv:
        results = asyncio.run(_run(_runner(srv, tmp_path), reqs))
        [batch] = srv.app.batches.values()
        error_lines = srv.app.files[batch["error_file_id"]]["content"].splitlines()
        failed = {json.loads(x)["custom_id"] for x in error_lines}
        assert 0 < len(failed) < 20
        assert {r.custom_id for r in results if not r.ok} == failed
        for r in results:
            if not r.ok:
                assert r.body is None and r.error["status_code"] == 500 and "error" in r.error["message"]

        srv.config.batch_error_rate = 0.0      # failed lines are not kept: the next run asks only for them
        again = asyncio.run(_run(_runner(srv, tmp_path), reqs))
        assert all(r.ok for r in again)
        assert set(_uploaded_ids(srv)[-1]) == failed
        assert [a.body for a, r in zip(again, results) if r.ok] == [r.body for r in results if r.ok]


class _Faults(httpx.AsyncBaseTransport):
    """Forwards to the stub, but lets a test fail or rewrite chosen exchanges."""

    def __init__(self, rules):
        self.inner, self.rules, self.seen = httpx.AsyncHTTPTransport(), rules, []

    async def handle_async_request(self, request):
        key = (request.method, request.url.path)
        self.seen.append(key)
        for match, action in self.rules:
            if match(*key):
                return await action(self.inner, request)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def _once(action):
    """A rule action that fires on the first match only."""
    fired = []

    async def act(inner, request):
        if fired:
            return await inner.handle_async_request(request)
        fired.append(1)
        return await action(inner, request)
    return act


async def _status(code, inner, request, headers=None):
    return httpx.Response(code, json={"error": {"message": "try later"}}, headers=headers or {})


def _client(srv, transport, key=None):
    return httpx.AsyncClient(base_url=srv.base_url, transport=transport,
                             headers={"Authorization": f"Bearer {key}"} if key else {})


def test_transient_errors_are_retried_and_a_lost_create_is_not_duplicated(tmp_path):
    async def create_then_lose_answer(inner, request):
        resp = await inner.handle_async_request(request)
        await resp.aread()
        raise httpx.ReadError("connection reset by peer", request=request)

    rules = [
        (lambda m, p: m == "POST" and p == "/v1/files", _once(lambda i, r: _status(503, i, r))),
        (lambda m, p: m == "POST" and p == "/v1/batches", _once(create_then_lose_answer)),
        (lambda m, p: m == "GET" and p.startswith("/v1/batches/"),
         _once(lambda i, r: _status(429, i, r, {"retry-after-ms": "10"}))),
        (lambda m, p: p.endswith("/content"), _once(lambda i, r: _status(502, i, r))),
    ]
    reqs = [_request(i) for i in range(5)]
    with _stub() as srv:
        faults = _Faults(rules)

        async def go():
            async with _client(srv, faults) as client:
                return await _run(_runner(srv, tmp_path, client=client), reqs)

        results = asyncio.run(go())
        assert all(r.ok for r in results)
        assert srv.stats["batches_created"] == 1
        assert faults.seen.count(("POST", "/v1/files")) == 2
        assert ("GET", "/v1/batches") in faults.seen          # looked for the batch whose answer was lost


def _rewrite_batch(status: str, **fields):
    """Make the stub's finished batch look `status` to the client (the stub never fails on its own)."""
    async def act(inner, request):
        resp = await inner.handle_async_request(request)
        batch = json.loads(await resp.aread())
        if batch["status"] == "completed":
            batch.update(status=status, **fields)
        return httpx.Response(200, json=batch)
    return act


def test_failed_batch_raises_naming_id_status_and_reason(tmp_path):
    reqs = [_request(i) for i in range(4)]
    reason = "Line 3: the model `gpt-x` does not exist."
    errors = {"object": "list", "data": [{"code": "model_not_found", "message": reason}]}
    rule = (lambda m, p: m == "GET" and p.startswith("/v1/batches/"), _rewrite_batch("failed", errors=errors))
    with _stub() as srv:
        async def go():
            async with _client(srv, _Faults([rule])) as client:
                return await _run(_runner(srv, tmp_path, client=client), reqs)

        with pytest.raises(DatagenError) as e:
            asyncio.run(go())
        [bid] = srv.app.batches
        assert bid in str(e.value) and "status failed" in str(e.value) and reason in str(e.value)
        assert _state_rows(tmp_path) == [(bid, "failed", "failed")]
        results = asyncio.run(_run(_runner(srv, tmp_path), reqs))   # a failed batch is submitted anew
        assert all(r.ok for r in results) and len(_batch_posts(srv)) == 2


def test_expired_batch_keeps_what_finished(tmp_path):
    reqs = [_request(i) for i in range(4)]
    rule = (lambda m, p: m == "GET" and p.startswith("/v1/batches/"), _rewrite_batch("expired"))
    with _stub() as srv:
        async def go():
            async with _client(srv, _Faults([rule])) as client:
                return await _run(_runner(srv, tmp_path, client=client), reqs)

        with pytest.raises(DatagenError, match="status expired"):
            asyncio.run(go())
        results = asyncio.run(_run(_runner(srv, tmp_path), reqs))
        assert all(r.ok for r in results) and len(_batch_posts(srv)) == 1   # all had finished: nothing resent


def test_refused_key_is_one_line_error_without_the_key(tmp_path):
    wrong = "sk-test-WRONG-KEY-should-never-be-printed"
    with _stub(require_api_key=KEY) as srv:
        with pytest.raises(DatagenError) as e:
            asyncio.run(_run(_runner(srv, tmp_path, api_key=wrong), [_request(0)]))
    msg = str(e.value)
    assert "HTTP 401" in msg and "OPENAI_API_KEY" in msg and "\n" not in msg and wrong not in msg


def test_unknown_recorded_batch_is_a_clear_404(tmp_path):
    reqs = [_request(i) for i in range(3)]
    with _stub() as srv:
        with pytest.raises(_Crash):
            asyncio.run(_run(_runner(srv, tmp_path, on_submitted=_crash), reqs))
        with sqlite3.connect(tmp_path / "batches.sqlite") as db:
            db.execute("UPDATE batch_batches SET batch_id = 'batch_from_elsewhere'")
        with pytest.raises(DatagenError) as e:
            asyncio.run(_run(_runner(srv, tmp_path), reqs))
    assert "HTTP 404" in str(e.value) and "batch_from_elsewhere" in str(e.value)


# ---------------------------------------------------------------------------------------------- limits, secrets

def test_large_runs_split_by_lines_bytes_endpoint_and_model(tmp_path):
    chat = [_request(i) for i in range(20)]
    with _stub() as srv:
        results = asyncio.run(_run(_runner(srv, tmp_path / "lines", max_lines=7), chat))
        assert all(r.ok for r in results) and [r.custom_id for r in results] == [r.custom_id for r in chat]
        assert [len(x) for x in _uploaded_ids(srv)] == [7, 7, 6]
        assert sum(_uploaded_ids(srv), []) == [r.custom_id for r in chat]

        srv.app.files.clear()
        line = len(json.dumps({"custom_id": chat[0].custom_id, "method": "POST", "url": "/v1/chat/completions",
                               "body": chat[0].body}, separators=(",", ":")).encode()) + 1
        results = asyncio.run(_run(_runner(srv, tmp_path / "bytes", max_bytes=3 * line + 5), chat[:9]))
        assert all(r.ok for r in results) and [len(x) for x in _uploaded_ids(srv)] == [3, 3, 3]

        srv.app.files.clear()
        mixed = [_request(i, "completion") for i in range(3)] + [_request(50)] + [_request(51, model="other-model")]
        results = asyncio.run(_run(_runner(srv, tmp_path / "mixed"), mixed))
        assert all(r.ok for r in results) and results[0].body["object"] == "text_completion"
        assert sorted(len(x) for x in _uploaded_ids(srv)) == [1, 1, 3]


def test_state_file_never_holds_the_api_key(tmp_path):
    reqs = [_request(i) for i in range(6)]
    with _stub(require_api_key=KEY) as srv:
        with pytest.raises(_Crash):
            asyncio.run(_run(_runner(srv, tmp_path, api_key=KEY, on_submitted=_crash), reqs[:3]))
        results = asyncio.run(_run(_runner(srv, tmp_path, api_key=KEY), reqs))
        assert all(r.ok for r in results)
        assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in srv.requests)
    written = list(tmp_path.glob("batches.sqlite*"))
    assert written
    for f in written:
        data = f.read_bytes()
        assert KEY.encode() not in data and b"BATCH-FAKE-KEY" not in data


def test_batch_mode_needs_a_real_endpoint(tmp_path):
    with pytest.raises(DatagenError, match="--batch-api"):
        BatchRunner.from_teacher_config(TeacherConfig(), tmp_path / "batches.sqlite")
