"""Distillation (answers, self-chat, best-of-K) and the judge of hard cases, against a scripted
loopback teacher where exact responses matter; the real Teacher client and the method code."""
from __future__ import annotations

import asyncio
import json

import pytest

from evol_responder import GOOD_ANSWER, Script, kind_of
from openai_stub import StubConfig, StubServer

from datagen.methods import distill, judge as judging
from datagen.methods.judge import JudgeParams, JudgeTemplates
from datagen.records import Record
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig


def _teacher(srv):
    return Teacher(TeacherConfig(base_url=srv.base_url, model="stub", max_concurrency=16, max_retries=0), cache=None)


def _distill(srv, inputs, **params):
    async def go():
        async with _teacher(srv) as teacher:
            j = teacher.as_role("judge")
            state = distill.DistillState(inputs, distill.DistillParams(**params), distill.DistillTemplates.load(),
                                         JudgeTemplates.load())
            await state.run(teacher, j)
            return state, teacher.usage, j.usage
    return asyncio.run(go())


def _bodies(srv):
    return [json.loads(r["body"]) for r in srv.requests_to("/v1/chat/completions")]


def test_one_answer_per_instruction_with_the_input_in_the_user_turn():
    with StubServer(StubConfig(responder=Script())) as srv:
        state, usage, _ = _distill(srv, [Record(instruction="Sort these.", input="3, 1, 2"), Record(instruction="Hi")])
        bodies = _bodies(srv)
    assert len(state.records) == 2 and usage.requests == 2
    assert {b["messages"][-1]["content"] for b in bodies} == {"Sort these.\n\n3, 1, 2", "Hi"}
    r = state.records[0]
    assert r.method == "distill" and r.output.startswith(GOOD_ANSWER) and r.input == "3, 1, 2"
    assert r.parents == [Record(instruction="Sort these.", input="3, 1, 2").id]


def test_self_chat_alternates_roles_and_ends_on_the_assistant():
    with StubServer(StubConfig(responder=Script())) as srv:
        state, _, _ = _distill(srv, [Record(instruction="Explain tides.")], turns=3, system="Be brief.")
        bodies = _bodies(srv)
    (r,) = state.records
    roles = [t["role"] for t in r.conversation]
    assert roles == ["user", "assistant"] * 3
    assert r.system == "Be brief." and r.conversation[0]["content"] == "Explain tides."
    assert r.conversation[2]["content"] == "Could you give an example of point 1?"
    assert r.output == r.conversation[-1]["content"] and distill.valid_sharegpt(r.conversation)
    # the assistant is asked with the system prompt and the whole conversation so far; the follow-up
    # writer (the teacher playing the user) gets the transcript
    answers = [b for b in bodies if kind_of(b) == "answer"]
    assert [len(b["messages"]) for b in answers] == [2, 4, 6]
    assert all(b["messages"][0] == {"role": "system", "content": "Be brief."} for b in answers)
    follow = [b for b in bodies if kind_of(b) == "followup"]
    assert len(follow) == 2 and "Assistant: " in follow[0]["messages"][-1]["content"]


def test_best_of_k_keeps_the_highest_score_and_rejects_the_rest_with_scores():
    seeds_seen = []

    def answers(body):
        seeds_seen.append(body["seed"])
        return f"answer-{len(seeds_seen)} " + GOOD_ANSWER

    script = Script(answers={"Explain": answers}, scores={"answer-1 ": 4, "answer-2 ": 9, "answer-3 ": 6})
    with StubServer(StubConfig(responder=script)) as srv:
        state, usage, judge_usage = _distill(srv, [Record(instruction="Explain tides.")], samples=3)
    (kept,) = state.records
    assert len(set(seeds_seen)) == 3 and usage.requests == 3 and judge_usage.requests == 3
    assert kept.output.startswith("answer-2 ") and kept.scores["judge"]["score"] == 9
    assert kept.scores["judge"]["all_scores"] == [4, 9, 6]
    rejected = sorted((r["detail"]["score"], r["reason"]) for r in state.rejected)
    assert rejected == [(4, "not_best_of_k"), (6, "not_best_of_k")]


def test_a_length_cut_answer_is_rejected_unless_kept_on_purpose():
    with StubServer(StubConfig(responder=Script())) as srv:
        state, _, _ = _distill(srv, [Record(instruction="Explain tides.")], max_tokens=5)
        kept, _, _ = _distill(srv, [Record(instruction="Explain tides.")], max_tokens=5, keep_truncated=True)
    assert [r["reason"] for r in state.rejected] == ["answer_cut_by_length"] and not state.records
    assert len(kept.records) == 1 and kept.records[0].meta["finish_reason"] == "length"


def _judge(srv, records, **params):
    async def go():
        async with _teacher(srv) as teacher:
            j = teacher.as_role("judge")
            out = await judging.judge_records(records, j, JudgeTemplates.load(), JudgeParams(**params))
            return out, teacher.usage, j.usage
    return asyncio.run(go())


def _batch():
    return [Record(instruction="Explain tides to a sailor.", output=GOOD_ANSWER, method="distill"),
            Record(instruction="Explain wind.", output="Sorry, I can't.", method="distill"),          # hedging, short
            Record(instruction="Name a colour.", output="Blue.", method="distill"),                  # short
            Record(instruction="Describe rain patterns here.", output=GOOD_ANSWER + " x", method="distill",
                   scores={"rouge_max": 0.65})]                                                       # near threshold


def test_only_flagged_records_reach_the_judge_unless_all():
    script = Script(scores={"Sorry": 2})
    with StubServer(StubConfig(responder=script)) as srv:
        (kept, rejected, counts), usage, judge_usage = _judge(srv, _batch())
        prompts = [b["messages"][-1]["content"] for b in _bodies(srv)]
    assert judge_usage.requests == 3 and usage.requests == 0
    assert not any("Explain tides to a sailor." in p for p in prompts)
    assert counts["signals"] == {"hedging": 1, "short_answer": 2, "rouge_near_threshold": 1}
    assert [r["reason"] for r in rejected] == ["judge_below_min_score"]
    assert rejected[0]["detail"]["score"] == 2 and "hedging" in rejected[0]["detail"]["signals"]
    assert len(kept) == 3 and "judge" not in kept[0].scores and kept[1].scores["judge"]["score"] == 7
    with StubServer(StubConfig(responder=script)) as srv:
        (kept, rejected, counts), _, judge_usage = _judge(srv, _batch(), mode="all")
    assert judge_usage.requests == 4 and counts["judged"] == 4


def test_min_score_decides_and_off_judges_nothing():
    with StubServer(StubConfig(responder=Script())) as srv:
        (kept, rejected, _), _, _ = _judge(srv, _batch(), mode="all", min_score=8)
        assert len(kept) == 0 and len(rejected) == 4
        (kept, rejected, counts), _, judge_usage = _judge(srv, _batch(), mode="off")
    assert len(kept) == 4 and judge_usage.requests == 0


def test_classification_tasks_with_one_label_are_flagged():
    recs = [Record(instruction="Is it spam?", input=f"m{i}", output="Yes", method="self_instruct",
                   meta={"is_classification": True, "task_id": "t1"}) for i in range(3)]
    judging.flag_single_label(recs)
    assert all("single_label" in judging.signals(r) for r in recs)


@pytest.mark.parametrize("params, problem", [
    ({"turns": 0}, "turns: must be a whole number between 1 and 50"),
    ({"samples": 0}, "samples: must be"),
])
def test_bad_distill_settings_are_named(params, problem):
    with pytest.raises(ValueError, match=problem):
        distill.DistillParams(**params)
