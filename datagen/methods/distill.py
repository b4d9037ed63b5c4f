"""Distillation: the teacher answers each instruction; `turns` > 1 holds a conversation by self-chat
(the teacher alternately writes the user's natural follow-up and the assistant's answer); `samples`
K > 1 draws K first answers and keeps the one the judge scores best (rejection sampling), the others
rejected with their scores.

Conversations start with the user and end with the assistant, so they satisfy LLaMA-Factory's
ShareGPT rules (human at odd positions, an even number of turns; a system prompt only first, kept
in `system`). `turns` counts user messages: `--turns 3` is six messages.

Determinism: each request's seed derives from (--seed, input id, turn, sample), so concurrent items
give the same dataset whatever order answers arrive in. Items are independent and advance at once;
within an item each turn waits for the one before it.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from datagen.methods import judge as judging
from datagen.methods.evol import derived_seed
from datagen.methods.common import capped, check_max_tokens
from datagen.methods.templates import Template, load_template
from datagen.records import Record
from datagen.teacher.client import BudgetExhausted

ANSWER_PARAMS = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024}
FOLLOWUP_PARAMS = {"temperature": 0.9, "top_p": 0.95, "max_tokens": 200}


@dataclass
class DistillParams:
    turns: int = 1
    samples: int = 1
    system: str = ""
    seed: int = 42
    max_tokens: int | None = None
    keep_truncated: bool = False       # an answer cut by max_tokens is rejected unless this is set
    prompts_dir: str | None = None

    def __post_init__(self) -> None:
        for name, high in (("turns", 50), ("samples", 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high:
                raise ValueError(f"{name}: must be a whole number between 1 and {high}, got {v!r}")
        if not isinstance(self.system, str):
            raise ValueError(f"system: expected a string, got {self.system!r}")
        check_max_tokens(self.max_tokens)

    def sampling(self, base: dict[str, Any]) -> dict[str, Any]:
        return capped(base, self.max_tokens)


@dataclass(frozen=True)
class DistillTemplates:
    followup: Template

    @classmethod
    def load(cls, prompts_dir: str | None = None) -> "DistillTemplates":
        return cls(followup=load_template("distill", "followup", prompts_dir, {"conversation"}))

    def hashes(self) -> dict[str, str]:
        return {self.followup.name: self.followup.sha256}


def first_message(record: Record) -> str:
    return f"{record.instruction}\n\n{record.input}" if record.input else record.instruction


def transcript(conversation: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{'User' if t['role'] == 'user' else 'Assistant'}: {t['content']}" for t in conversation)


def valid_sharegpt(conversation: list[dict[str, str]]) -> bool:
    """User at odd positions (1-based), assistant at even, an even number, nothing empty."""
    return (len(conversation) >= 2 and len(conversation) % 2 == 0
            and all(t["role"] == ("user" if i % 2 == 0 else "assistant") and t["content"].strip()
                    for i, t in enumerate(conversation)))


class DistillState:
    def __init__(self, inputs: list[Record], params: DistillParams, templates: DistillTemplates,
                 judge_templates: judging.JudgeTemplates):
        self.inputs, self.params, self.templates, self.judge_templates = inputs, params, templates, judge_templates
        self.records: list[Record] = []
        self.rejected: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self.budget_stop = ""

    def reject(self, record: Record, reason: str, detail: dict[str, Any]) -> None:
        self.counts[f"rejected.{reason}"] += 1
        self.rejected.append({"id": record.id, "stage": "distill", "reason": reason, "detail": detail,
                              "text": record.instruction, "record": record.to_dict()})

    async def run(self, teacher: Any, judge: Any) -> None:
        results = await asyncio.gather(*(self._item(r, teacher, judge) for r in self.inputs), return_exceptions=True)
        for src, res in zip(self.inputs, results):
            if isinstance(res, BudgetExhausted):
                self.budget_stop = res.reason
                self.counts["not_answered.budget"] += 1
                continue
            if isinstance(res, BaseException):
                raise res
            kept, rejects = res
            for rec, reason, detail in rejects:
                self.reject(rec, reason, detail)
            if kept is not None:
                self.records.append(kept)
                self.counts["kept"] += 1

    def _messages(self, conversation: list[dict[str, str]]) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.params.system}] if self.params.system else []
        return system + conversation

    def _record(self, src: Record, conversation: list[dict[str, str]], teacher: Any, keys: list[str],
                scores: dict[str, Any], meta: dict[str, Any]) -> Record:
        multi = self.params.turns > 1
        return Record(instruction=src.instruction, input=src.input if not multi else "",
                      output=conversation[-1]["content"], conversation=conversation if multi else [],
                      system=self.params.system, lang=src.lang, method="distill", parents=[src.id],
                      teacher={"model": teacher.model, "requests": keys}, scores=scores,
                      meta={**meta, "turns": len(conversation) // 2})

    async def _item(self, src: Record, teacher: Any, judge: Any):
        p = self.params
        rejects: list[tuple[Record, str, dict[str, Any]]] = []
        conversation = [{"role": "user", "content": first_message(src)}]
        k_answers = await asyncio.gather(*(
            teacher.complete("", {**p.sampling(ANSWER_PARAMS), "seed": derived_seed(p.seed, src.id, 1, k)}, sample=0,
                             kind="answer", messages=self._messages(conversation))
            for k in range(p.samples)))
        best, scores = 0, {}
        if p.samples > 1:
            judged = await asyncio.gather(*(
                judging.score(judge, self.judge_templates, first_message(src), a.text.strip(),
                              seed=derived_seed(p.seed, src.id, "judge", k)) for k, a in enumerate(k_answers)))
            ranked = [(s if s is not None else 0, -k) for k, (s, _) in enumerate(judged)]
            best = -max(ranked)[1]
            for k, (a, (s, why)) in enumerate(zip(k_answers, judged)):
                if k != best:
                    cand = Record(instruction=src.instruction, input=src.input, output=a.text.strip(), method="distill",
                                  parents=[src.id], meta={"sample": k})
                    rejects.append((cand, "not_best_of_k", {"score": s, "rationale": why, "sample": k,
                                                            "best_sample": best, "best_score": judged[best][0]}))
            scores = {"judge": {"score": judged[best][0], "rationale": judged[best][1], "best_of": p.samples,
                                "sample": best, "all_scores": [s for s, _ in judged]}}
        first = k_answers[best]
        keys = [first.key]
        conversation.append({"role": "assistant", "content": first.text.strip()})
        finish = [first.finish_reason]
        for turn in range(2, p.turns + 1):
            follow = await teacher.complete(
                self.templates.followup.render(conversation=transcript(conversation)),
                {**p.sampling(FOLLOWUP_PARAMS), "seed": derived_seed(p.seed, src.id, turn, "user")}, sample=0,
                kind="followup", api="chat")
            question = follow.text.strip()
            for prefix in ("User:", "user:", "USER:"):
                if question.startswith(prefix):
                    question = question[len(prefix):].strip()
            keys.append(follow.key)
            if not question:
                break
            conversation.append({"role": "user", "content": question})
            answer = await teacher.complete(
                "", {**p.sampling(ANSWER_PARAMS), "seed": derived_seed(p.seed, src.id, turn, "assistant")}, sample=0,
                kind="answer", messages=self._messages(conversation))
            keys.append(answer.key)
            finish.append(answer.finish_reason)
            conversation.append({"role": "assistant", "content": answer.text.strip()})
        meta = {"finish_reason": "length" if "length" in finish else "stop"}
        record = self._record(src, conversation, teacher, keys, scores, meta)
        if not valid_sharegpt(conversation):
            empty = next(i for i, t in enumerate(conversation) if not t["content"].strip()) \
                if any(not t["content"].strip() for t in conversation) else None
            return None, rejects + [(record, "empty_answer", {"position": empty})]
        if "length" in finish and not p.keep_truncated:
            return None, rejects + [(record, "answer_cut_by_length",
                                     {"max_tokens": p.sampling(ANSWER_PARAMS)["max_tokens"]})]
        if len(conversation) < 2 * p.turns:
            record.meta["ended_early"] = "the follow-up question came back empty"
            self.counts["conversations_shorter_than_turns"] += 1
        return record, rejects
