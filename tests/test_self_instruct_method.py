"""The Self-Instruct steps against a scripted teacher object: finish reasons, budget stops, rounds."""
from __future__ import annotations

import asyncio

from datagen.methods.self_instruct import SelfInstructParams, SelfInstructState, Templates
from datagen.store.seeds import SeedTask
from datagen.teacher.client import BudgetExhausted, Completion

SEEDS = [SeedTask(id=f"s{i}", instruction=f"Seed task number {i} about topic {chr(97 + i)} with words.")
         for i in range(10)]


class ScriptedTeacher:
    """Answers by request kind; `script[kind]` is a list of (text, finish_reason) used in turn."""

    def __init__(self, script, budget_after=None):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = 0
        self.budget_after = budget_after

    async def complete(self, prompt, params, kind="other", **_):
        self.calls += 1
        if self.budget_after is not None and self.calls > self.budget_after:
            raise BudgetExhausted("budget: max_total_tokens")
        text, finish = self.script[kind].pop(0) if len(self.script[kind]) > 1 else self.script[kind][0]
        return Completion(text=text, finish_reason=finish, prompt_tokens=10, completion_tokens=5, cached=False,
                          key=f"k{self.calls}", model="scripted")


def _state(n=2):
    return SelfInstructState(SEEDS, SelfInstructParams(num_instructions=n, prompts_per_round=2), Templates.load())


def _run(state, teacher):
    async def go():
        while not state.finished():
            if state.bootstrap_prompt_count():
                await state.bootstrap_round(teacher)
            batch = state.take_batch()
            if batch:
                await state.classify(teacher, batch)
                await state.generate_instances(teacher, batch)
        state.finish()
    asyncio.run(go())


GOOD_BOOT = (" Explain how tides work to a curious child.\n10. List three uses of copper in modern homes.", "stop")
GEN = ("Example 1\nInput: a case\nOutput: an answer.", "stop")


def test_bootstrap_cut_by_length_is_dropped_whole():
    state = _state()
    teacher = ScriptedTeacher({"bootstrap": [(GOOD_BOOT[0], "length"), GOOD_BOOT], "classify": [(" No", "stop")],
                               "instances": [GEN]})
    _run(state, teacher)
    reasons = [r["reason"] for r in state.rejected if r["stage"] == "bootstrap"]
    assert "response_truncated" in reasons and len(state.done) == 2


def test_content_filter_is_rejected_with_its_reason():
    state = _state()
    teacher = ScriptedTeacher({"bootstrap": [("", "content_filter"), GOOD_BOOT], "classify": [(" No", "stop")],
                               "instances": [("", "content_filter"), GEN]})
    _run(state, teacher)
    assert {(r["stage"], r["reason"]) for r in state.rejected} >= {("bootstrap", "content_filter"),
                                                                  ("instances", "content_filter")}


def test_instances_cut_by_length_lose_only_the_last():
    state = _state(1)
    two = ("Example 1\nInput: a\nOutput: b.\nExample 2\nInput: c\nOutput: d is cu", "length")
    _run(state, ScriptedTeacher({"bootstrap": [GOOD_BOOT], "classify": [(" No", "stop")], "instances": [two]}))
    assert state.done[0].instances == [("a", "b.")]


def test_budget_refusal_winds_down_and_keeps_what_is_done():
    state = _state(50)
    teacher = ScriptedTeacher({"bootstrap": [GOOD_BOOT], "classify": [(" No", "stop")], "instances": [GEN]},
                              budget_after=6)
    _run(state, teacher)
    assert state.stop_reason == "budget" and 0 < len(state.done) < 50
    assert any(r["reason"] == "budget_exhausted" for r in state.rejected) or not state.pending
