"""Rate limits, adaptive concurrency and budgets, through the real client against the stub server."""
from __future__ import annotations

import asyncio
import json

import pytest

from conftest import run_cli
from datagen.teacher.budget import Budget, Prices
from datagen.teacher.client import BudgetExhausted, Teacher
from datagen.teacher.config import TeacherConfig
from datagen.teacher.ratelimit import RateLimiter
from openai_stub import StubConfig, StubServer
from si_responder import responder

PARAMS = {"temperature": 0, "max_tokens": 16}


def _teacher(srv, **kw) -> Teacher:
    budget = kw.pop("budget", None)
    return Teacher(TeacherConfig(base_url=srv.base_url, model="stub", backoff_base_s=0.01, **kw), budget=budget)


async def _many(teacher: Teacher, n: int, watch: list | None = None):
    async def one(i):
        c = await teacher.complete(f"prompt number {i}", PARAMS)
        if watch is not None:
            watch.append(teacher.concurrency.limit)
        return c
    async with teacher:
        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


def test_no_window_holds_more_requests_than_allowed():
    """The guarantee is about the limiter's own grant times, read on an injected clock: a loaded
    machine can delay when a granted request reaches the socket, which is not the limiter's doing.
    The clock moves only when the limiter sleeps, so the check is the same on any machine."""
    now = [0.0]

    async def virtual_sleep(delay: float) -> None:
        now[0] += max(0.0, delay)
        await asyncio.sleep(0)

    granted: list[float] = []
    with StubServer() as srv:
        teacher = _teacher(srv, max_concurrency=16, rpm=8, rate_window_s=1.0)
        teacher.limiter = RateLimiter(rpm=8, period_s=1.0, clock=lambda: now[0], sleep=virtual_sleep)
        original = teacher.limiter.acquire

        async def acquire(tokens: int = 0):
            res = await original(tokens)
            granted.append(res.started_at)
            return res

        teacher.limiter.acquire = acquire
        results = asyncio.run(_many(teacher, 30))
        assert all(not isinstance(r, Exception) for r in results)
        assert len(srv.requests_to("/v1/completions")) == 30
    assert len(granted) == 30
    granted.sort()
    worst = max(sum(1 for t in granted if start <= t < start + 1.0) for start in granted)
    assert worst == 8                          # full windows, never more
    assert granted[-1] - granted[0] >= 3.0     # 30 requests at 8 per window span more than 3 windows


def test_rate_limit_headers_are_adopted():
    with StubServer(StubConfig(ratelimit_headers=True, ratelimit_requests=12)) as srv:
        teacher = _teacher(srv, max_concurrency=4)
        asyncio.run(_many(teacher, 3))
        assert teacher.limiter.request_limit == 12


def test_concurrency_shrinks_on_429_and_recovers():
    with StubServer(StubConfig(rate_429=0.5, faults_per_request_key=1, retry_after_s=0.05, latency_s=0.02)) as srv:
        teacher = _teacher(srv, max_concurrency=16)
        seen: list[int] = []
        results = asyncio.run(_many(teacher, 200, seen))
    assert all(not isinstance(r, Exception) for r in results)
    assert teacher.usage.retries["429"] > 0
    assert min(seen) <= 8                   # multiplicative decrease happened
    assert seen[-1] > min(seen)             # and additive increase climbed back
    assert max(seen) <= 16


def test_budget_stops_new_requests():
    with StubServer() as srv:
        budget = Budget(max_total_tokens=400, prices=Prices({}), model="stub")
        teacher = _teacher(srv, max_concurrency=2, budget=budget)
        results = asyncio.run(_many(teacher, 40))
    done = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    assert done and refused and len(done) + len(refused) == 40
    assert budget.spent_tokens <= 400 and budget.exhausted


def test_budget_cost_with_prices():
    budget = Budget(max_cost_usd=0.001, prices=Prices({"stub": {"input": 1.0, "output": 2.0}}), model="stub")
    with StubServer() as srv:
        results = asyncio.run(_many(_teacher(srv, max_concurrency=2, budget=budget), 200))
    assert any(isinstance(r, BudgetExhausted) for r in results)
    assert budget.spent_usd <= 0.001 and budget.reason == "budget: max_cost"


@pytest.mark.slow
def test_budget_stop_publishes_a_partial_version(tmp_path, prefect_env):
    with StubServer(StubConfig(responder=responder)) as srv:
        p = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--num-instructions", "50",
                     "--out", str(tmp_path), "--name", "b", "--base-url", srv.base_url, "--model", "stub",
                     "--max-total-tokens", "20000", "--cache", str(tmp_path / "c.sqlite")], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "budget" in p.stderr
    manifest = json.loads((tmp_path / "b" / "v0001" / "manifest.json").read_text())
    assert manifest["partial"] == "budget" and manifest["partial_reason"] == "budget: max_total_tokens"
    assert 0 < manifest["counts"]["instructions"] < 50
    assert manifest["budget"]["spent_tokens"] <= 20000
    assert manifest["counts"]["records"] == len((tmp_path / "b" / "v0001" / "alpaca.jsonl").read_text().splitlines())
