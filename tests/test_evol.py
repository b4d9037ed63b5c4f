"""Evol-Instruct's elimination rules, each on the right text and only there; re-queued failures;
lineage; the same records whatever order answers arrive in. Scripted loopback teacher (exact
responses matter here), the real Teacher client and the method code; no Prefect."""
from __future__ import annotations

import asyncio
import hashlib

import pytest

from evol_responder import GOOD_ANSWER, Script, kind_of, last_user
from openai_stub import StubConfig, StubServer

from datagen.errors import DatagenError
from datagen.methods import evol
from datagen.methods.judge import JudgeTemplates
from datagen.records import Record
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig

LONG_SORRY = "I am sorry for the delay, but here is the full answer. " + " ".join(["Detail follows here."] * 30)


def _run(srv, inputs, **params):
    async def go():
        cfg = TeacherConfig(base_url=srv.base_url, model="stub", max_concurrency=16, max_retries=0)
        async with Teacher(cfg, cache=None) as teacher:
            judge = teacher.as_role("judge")
            state = evol.EvolState(inputs, evol.EvolParams(**params), evol.EvolTemplates.load(), JudgeTemplates.load())
            while not state.finished():
                await state.evolve_round(teacher, judge)
            return state, teacher.usage, judge.usage
    return asyncio.run(go())


def _kinds(srv):
    import json
    out = []
    for r in srv.requests_to("/v1/chat/completions"):
        body = json.loads(r["body"])
        out.append((kind_of(body), last_user(body)))
    return out


def _records(*texts):
    return [Record(instruction=t) for t in texts]


def test_rule4_fires_on_the_evolved_instruction_before_any_answer_is_paid_for():
    script = Script(rewrite={"COPY": "#Rewritten Prompt#: Explain tides in detail for sailors."})
    with StubServer(StubConfig(responder=script)) as srv:
        state, usage, judge_usage = _run(srv, _records("Explain tides. COPY", "Explain rain."), rounds=1)
        kinds = _kinds(srv)
    eliminated = [r for r in state.rejected if r["reason"] == "rule4_copied_prompt"]
    assert len(eliminated) == 1 and eliminated[0]["detail"]["copied"] == "#rewritten prompt#"
    assert eliminated[0]["record"]["output"] == ""
    # no answer and no judge request for the copied rewrite; the other item was answered and judged
    answered = [t for k, t in kinds if k == "answer"]
    assert all("#Rewritten Prompt#" not in t for t in answered) and len(answered) == 1
    assert sum(1 for k, _ in kinds if k == "equal") == 1
    assert [r.instruction.startswith("Explain rain.") for r in state.survivors] == [True]


def test_rule4_words_in_the_answer_do_not_eliminate():
    script = Script(answers={"Explain": GOOD_ANSWER + " The given prompt and the rewritten prompt are both fine."})
    with StubServer(StubConfig(responder=script)) as srv:
        state, _, _ = _run(srv, _records("Explain rain."), rounds=1)
    assert len(state.survivors) == 1 and not state.rejected


def test_rule2_fires_on_a_short_sorry_answer_not_on_the_instruction_or_a_long_answer():
    script = Script(rewrite={"A1": "Say sorry to a friend politely in a short letter.",
                             "A3": lambda old: old + " with more depth"},
                    answers={"A2": "Sorry, I cannot help with that.", "A3": LONG_SORRY})
    with StubServer(StubConfig(responder=script)) as srv:
        state, _, _ = _run(srv, _records("Write a note A1", "Plan a trip A2", "Describe bridges A3"), rounds=1)
        kinds = _kinds(srv)
    reasons = {r["record"]["instruction"]: r["reason"] for r in state.rejected}
    assert list(reasons.values()) == ["rule2_sorry_short"]
    assert "A2" in next(iter(reasons))
    kept = [r.instruction for r in state.survivors]
    assert "Say sorry to a friend politely in a short letter." in kept          # "sorry" in the instruction is fine
    assert any("A3" in t for t in kept)                                          # sorry, but >= 80 words
    # the sorry-short answer never reached the equality judge
    assert not any(k == "equal" and "A2" in t for k, t in kinds)


def test_rule3_fires_on_an_answer_of_stop_words_and_punctuation_only():
    script = Script(answers={"B1": "It is, and so... the of it!", "B2": "The answer is 42."})
    with StubServer(StubConfig(responder=script)) as srv:
        state, _, judge_usage = _run(srv, _records("Compute B1", "Compute B2"), rounds=1)
    assert [r["reason"] for r in state.rejected] == ["rule3_only_stopwords"]
    assert "B1" in state.rejected[0]["record"]["instruction"]
    assert judge_usage.requests == 1          # only B2 was worth asking the judge about


def test_rule1_is_the_judges_equal_verdict_on_old_and_new_instruction():
    script = Script(equal=["C1"])
    with StubServer(StubConfig(responder=script)) as srv:
        state, usage, judge_usage = _run(srv, _records("Summarise C1", "Summarise C2"), rounds=1)
    assert [r["reason"] for r in state.rejected] == ["rule1_no_information_gain"]
    assert judge_usage.requests == 2 and usage.requests == 4      # judge usage is counted apart
    rates = state.pass_rates()
    assert rates["eliminations"]["rule1_no_information_gain"] == 1
    assert sum(v["attempts"] for v in rates["per_operation"].values()) == 2


def test_a_failed_item_returns_unchanged_and_may_pass_a_later_round():
    calls = {"n": 0}

    def answer_first_time_sorry(body):
        calls["n"] += 1
        return "Sorry, no." if calls["n"] == 1 else GOOD_ANSWER

    script = Script(answers={"D1": answer_first_time_sorry})
    with StubServer(StubConfig(responder=script)) as srv:
        state, _, _ = _run(srv, _records("Describe D1"), rounds=3)
    original = Record(instruction="Describe D1")
    assert [r["reason"] for r in state.rejected] == ["rule2_sorry_short"]
    assert state.rejected[0]["detail"]["round"] == 1
    r2, r3 = state.survivors
    assert (r2.round, r3.round) == (2, 3)
    assert r2.parents == [original.id] and r2.meta["evolved_from"] == "Describe D1"   # evolved from the original
    assert r3.parents == [r2.id] and r3.meta["root"] == original.id == r2.meta["root"]  # survivors evolve further
    assert r3.instruction.startswith(r2.instruction)


def test_the_union_of_every_rounds_survivors_is_published_with_lineage():
    with StubServer(StubConfig(responder=Script())) as srv:
        state, _, _ = _run(srv, _records("Explain E1", "Explain E2"), rounds=3)
    assert len(state.survivors) == 6
    assert sorted(r.round for r in state.survivors) == [1, 1, 2, 2, 3, 3]
    for r in state.survivors:
        assert r.method == "evol" and r.op in evol.OPERATIONS and r.meta["root"] and r.parents and r.output
    rates = state.pass_rates()
    assert rates["per_round"]["2"] == {"attempts": 2, "passed": 2, "pass_rate": 1.0}


def test_operations_follow_the_weights():
    with StubServer(StubConfig(responder=Script())) as srv:
        state, _, _ = _run(srv, _records(*[f"Explain topic {i}" for i in range(30)]), rounds=1,
                           weights={"breadth": 1, **{op: 0 for op in evol.IN_DEPTH}})
    assert {r.op for r in state.survivors} == {"breadth"}


def test_answers_out_of_order_give_the_same_records():
    script = Script(answers={"F3": "Sorry, no."}, equal=["F5"])

    async def slow_first(kind, body):       # earlier-sent requests answer later
        text = last_user(body)
        await asyncio.sleep(int(hashlib.sha256(text.encode()).hexdigest()[:2], 16) / 2000)
        return script(kind, body)

    inputs = _records(*[f"Explain F{i}" for i in range(8)])
    with StubServer(StubConfig(responder=script)) as srv:
        a, _, _ = _run(srv, inputs, rounds=2)
    with StubServer(StubConfig(responder=slow_first)) as srv:
        b, _, _ = _run(srv, inputs, rounds=2)
    assert [r.to_dict() for r in a.survivors] == [r.to_dict() for r in b.survivors]
    assert [r["id"] for r in a.rejected] == [r["id"] for r in b.rejected]


def test_naive_order_makes_the_same_decisions_with_more_requests():
    script = Script(rewrite={"G1": "#Created Prompt#: something"}, answers={"G2": "Sorry, no.", "G3": "the, of."},
                    equal=["G4"])
    inputs = _records(*[f"Explain G{i}" for i in range(6)])
    with StubServer(StubConfig(responder=script)) as srv:
        cheap, cu, cj = _run(srv, inputs, rounds=2)
    with StubServer(StubConfig(responder=script)) as srv:
        naive, nu, nj = _run(srv, inputs, rounds=2, order="naive")
    assert [r.to_dict() for r in cheap.survivors] == [r.to_dict() for r in naive.survivors]
    assert [(r["id"], r["reason"]) for r in cheap.rejected] == [(r["id"], r["reason"]) for r in naive.rejected]
    assert cu.requests + cj.requests < nu.requests + nj.requests


@pytest.mark.parametrize("params, problem", [
    ({"rounds": 0}, "rounds: must be a whole number between 1 and 100"),
    ({"weights": {"deepen": 1}}, "unknown operation 'deepen'"),
    ({"weights": {op: 0 for op in evol.OPERATIONS}}, "every operation weighs 0"),
])
def test_bad_settings_are_named(params, problem):
    with pytest.raises(ValueError, match=problem):
        evol.EvolParams(**params)


def test_weights_flag_names_an_unknown_operation():
    from datagen.runspec import parse_weights
    with pytest.raises(DatagenError, match="--weights: unknown operation 'deepen'"):
        parse_weights("breadth=2,deepen=1")
    assert parse_weights("breadth=2, add-constraints=0.5") == {"breadth": 2.0, "add_constraints": 0.5}
