"""The overlapped Self-Instruct schedule: the same dataset whatever order answers arrive in, and a
SIGKILL in the middle of overlapped work resumes with no answer requested twice. Scripted loopback
teacher (exact responses matter), the real Teacher client."""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sqlite3

import pytest

from conftest import run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder

from datagen.methods.overlapped import PRIOR_SUCCESS, OverlappedRun
from datagen.methods.self_instruct import SelfInstructParams, SelfInstructState, Templates
from datagen.store.seeds import load_seeds
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig

SEEDS = load_seeds("seeds/175.jsonl")


def _generate(srv, n=30, window=8, concurrency=32):
    async def go():
        cfg = TeacherConfig(base_url=srv.base_url, model="stub", max_concurrency=concurrency, max_retries=0)
        async with Teacher(cfg, cache=None) as teacher:
            state = SelfInstructState(SEEDS, SelfInstructParams(num_instructions=n), Templates.load())
            run = OverlappedRun(state, window)
            await run.run(teacher)
            state.finish()
            return state, run, teacher.usage
    return asyncio.run(go())


def _signature(state):
    return ([r.to_dict() for r in state.records("stub")], [(r["stage"], r["reason"], r["text"]) for r in state.rejected])


def _delay(body) -> float:
    text = json.dumps(body, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:3], 16) / 4096 * 0.05


def test_answers_out_of_order_publish_the_same_dataset():
    seen = []

    async def shuffled(kind, body):        # random-looking, content-derived latencies: arrival order scrambles
        await asyncio.sleep(_delay(body))
        seen.append(body.get("seed"))
        return responder(kind, body)

    with StubServer(StubConfig(responder=responder)) as srv:
        a, run_a, usage_a = _generate(srv)
    with StubServer(StubConfig(responder=shuffled)) as srv:
        b, run_b, usage_b = _generate(srv)
        sent = [json.loads(r["body"]).get("seed") for r in srv.requests_to("/v1/completions")]
    assert len(a.done) == 30 and a.stop_reason == "target_reached"
    assert _signature(a) == _signature(b)
    assert len(run_a.prompts) == len(run_b.prompts) and usage_a.requests == usage_b.requests
    answered = [s for s in seen if s is not None]
    assert [s for s in sent if s is not None] != answered          # answers really came back out of order


def test_later_requests_answered_first_give_the_same_dataset():
    """The harshest order: every bootstrap answer waits until the one sent after it has answered."""
    order: list[asyncio.Event] = []

    async def reverse(kind, body):
        prompt = body.get("prompt") or ""
        if not prompt.rstrip().endswith("9."):
            return responder(kind, body)
        mine = asyncio.Event()
        order.append(mine)
        idx = len(order) - 1
        try:
            await asyncio.wait_for(mine.wait(), timeout=0.2)     # released by the next request, or time out
        except asyncio.TimeoutError:
            pass
        if idx > 0:
            order[idx - 1].set()
        return responder(kind, body)

    with StubServer(StubConfig(responder=responder)) as srv:
        a, _, _ = _generate(srv, n=12, window=4)
    with StubServer(StubConfig(responder=reverse)) as srv:
        b, _, _ = _generate(srv, n=12, window=4)
    assert _signature(a) == _signature(b)


def test_the_window_is_part_of_the_recipe():
    with StubServer(StubConfig(responder=responder)) as srv:
        w1, _, _ = _generate(srv, n=12, window=1)
        w8, _, _ = _generate(srv, n=12, window=8)
        w8b, _, _ = _generate(srv, n=12, window=8)
    assert _signature(w8) == _signature(w8b)
    assert len(w1.done) == len(w8.done) == 12


def test_overlapped_stops_at_the_target_and_says_what_was_beyond_it():
    with StubServer(StubConfig(responder=responder)) as srv:
        state, run, _ = _generate(srv, n=5, window=16)
    assert len(state.done) == 5
    order = [t for p in run.prompts for t in p.tasks]
    after = order[order.index(state.done[-1]) + 1:]
    not_needed = [r["text"] for r in state.rejected if r["reason"] == "not_needed"]
    assert not_needed == [t.instruction for t in after] and after        # each one said, in order
    assert len(run.prompts) <= 16          # before any answer, no more prompts than the target needs at 1 each


WORDS = ("lantern orbit velvet quarry meadow cipher harbor tundra ember falcon prism willow canyon beacon "
         "granite lagoon nectar summit thistle vortex walnut zephyr bramble cobalt dune fjord glacier hollow").split()


def rich(kind, body):
    """si_responder, except that a bootstrap answer holds five novel instructions, not one to four."""
    prompt = body.get("prompt") or ""
    if not prompt.rstrip().endswith("9."):
        return responder(kind, body)
    import random
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    items = [f"Explain {' '.join(rng.sample(WORDS, 7))}." for _ in range(5)]
    return " " + "\n".join(f"{i}. {t}" if i > 9 else t for i, t in enumerate(items, 9))


def test_tasks_the_target_does_not_need_are_not_paid_for():
    """A wide window folds many more accepted tasks than the target at once: the need gate sends
    classification and instances only for as many as may be needed, not for every task."""
    with StubServer(StubConfig(responder=rich)) as srv:
        state, run, usage = _generate(srv, n=40, window=64, concurrency=128)
    accepted = sum(len(p.tasks) for p in run.prompts)
    classified = state.counts["classify.yes"] + state.counts["classify.no"]
    failed = classified - state.counts["instances.tasks_valid"]
    assert len(state.done) == 40 and accepted >= 1.3 * 40        # the scenario: far more tasks than needed
    assert classified <= math.ceil(40 / PRIOR_SUCCESS) + failed + 2
    assert usage.requests == len(run.prompts) + 2 * classified


@pytest.mark.slow
def test_sigkill_mid_overlapped_generation_resumes_with_nothing_asked_twice(tmp_path, prefect_env):
    def args(out):
        return ["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "40", "--schedule", "overlapped",
                "--window", "16", "--max-concurrency", "32", "--out", str(out), "--name", "ov",
                "--base-url", srv.base_url, "--model", "stub", "--cache", str(out / "c.sqlite")]

    def calls():
        return len(srv.requests_to("/v1/completions"))

    with StubServer(StubConfig(responder=responder, latency_s=0.02)) as srv:
        ref = run_cli(args(tmp_path / "ref"), env=prefect_env)
        assert ref.returncode == 0, ref.stderr[-3000:]
        total = calls()
        srv.reset()
        killed = run_cli(args(tmp_path / "k"), env={**prefect_env, "DATAGEN_CRASH_AT": "teacher.after_cache_put@40"})
        assert killed.returncode == -9, killed.stderr[-2000:]
        with sqlite3.connect(tmp_path / "k" / "c.sqlite") as db:
            cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        srv.reset()
        again = run_cli(args(tmp_path / "k"), env=prefect_env)
        assert again.returncode == 0, again.stderr[-3000:]
        resent = calls()
    assert 0 < cached < total and resent == total - cached
    ref_v, v = tmp_path / "ref" / "ov" / "v0001", tmp_path / "k" / "ov" / "v0001"
    assert (v / "records.jsonl").read_text() == (ref_v / "records.jsonl").read_text()
    assert (v / "rejected.jsonl").read_text() == (ref_v / "rejected.jsonl").read_text()
