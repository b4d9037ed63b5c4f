"""Bookkeeping the generating methods share: answers gathered in request order under a budget,
rejected rows in one schema, the target, and max_tokens caps. Plain Python, no Prefect."""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from datagen.filters.rouge_novelty import RougeNovelty
from datagen.records import Record, content_id
from datagen.teacher.client import BudgetExhausted, Completion

ROUGE_KEYS = ("rouge_max", "most_similar", "avg_similarity", "avg_similarity_n", "pool_size")


def rouge_scores(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: detail[k] for k in ROUGE_KEYS if k in detail}


def capped(base: dict[str, Any], cap: int | None, max_tokens: int | None = None) -> dict[str, Any]:
    """`base` sampling with its max_tokens replaced by `max_tokens` if given, then capped by `cap`."""
    params = dict(base)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if cap is not None:
        params["max_tokens"] = min(params["max_tokens"], cap)
    return params


def check_max_tokens(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_tokens: must be a whole number of at least 1, got {value!r}")


class BootstrapState:
    """What Self-Instruct and its Alpaca variant both track: the novelty pool seeded with the seeds,
    accepted tasks (`done`) against the target, rejected rows, counters, and a budget stop."""

    variant_meta: dict[str, Any] = {}
    stall_unit = "round"                                   # for the stalled explanation
    stall_setting = "config self_instruct.rouge_threshold"
    stall_n: int | None = None                             # set where the stall is counted otherwise

    def __init__(self, seeds: list, params: Any):
        self.seeds = seeds
        self.params = params
        self.novelty = RougeNovelty(threshold=params.rouge_threshold, tokenizer=params.rouge_tokenizer)
        for s in seeds:
            self.novelty.add(s.instruction)
        self.done: list[Any] = []
        self.rejected: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self.round = 0
        self.prompts_sent = 0
        self.stalled = 0
        self.stop_reason = ""
        self.budget_stop = ""   # set when the teacher's budget refused a request

    async def _ask_all(self, requests: list) -> list[Completion | None]:
        """All answers in request order; None where the budget refused the request (the run then winds down)."""
        results = await asyncio.gather(*requests, return_exceptions=True)
        out: list[Completion | None] = []
        for r in results:
            if isinstance(r, BudgetExhausted):
                self.budget_stop = r.reason
                out.append(None)
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r)
        return out

    def needed(self) -> int:
        return max(0, self.params.num_instructions - len(self.done))

    def reject(self, stage: str, reason: str, text: str, detail: dict[str, Any] | None = None,
               record: dict[str, Any] | None = None) -> None:
        self.counts[f"rejected.{stage}.{reason}"] += 1
        detail = detail or {}
        if record is None:
            # One schema for rejected.jsonl everywhere (dedup/filter rows carry the record too): the
            # candidate as a record, with the instance when a single instance was dropped.
            inp, out = str(detail.get("input", "")), str(detail.get("output", ""))
            record = Record(instruction=text, input=inp, output=out, method="self_instruct", round=self.round,
                            meta=dict(self.variant_meta)).to_dict()
        self.rejected.append({"id": record.get("id") or content_id(text), "stage": stage, "reason": reason,
                              "detail": detail, "text": text, "record": record})

    def waiting(self) -> bool:
        """Accepted work still on its way to records (Self-Instruct's tasks awaiting instances)."""
        return False

    def finished(self) -> bool:
        if self.budget_stop:
            self.stop_reason = "budget"
            return True
        if self.needed() == 0:
            self.stop_reason = self.stop_reason or "target_reached"
            return True
        if self.stalled >= self.params.max_stalled_rounds and not self.waiting():
            self.stop_reason = "stalled"
            return True
        return False

    def stop_explanation(self) -> str:
        """What a stop other than reaching the target means, and what the user can do about it."""
        if self.stop_reason == "stalled":
            n = self.stall_n or self.params.max_stalled_rounds
            return (f"stalled: {n} {self.stall_unit}{'s' if n != 1 else ''} in a row accepted no new instruction "
                    "(every candidate was filtered; rejected.jsonl says why); try a larger or more varied seed "
                    f"pool, a higher rouge_threshold ({self.stall_setting}), or a stronger teacher")
        if self.stop_reason == "budget":
            return self.budget_stop or "budget"
        return ""

    def summary_counts(self, n_records: int, prompts_key: str = "bootstrap.prompts") -> dict[str, Any]:
        return {
            **{k: v for k, v in sorted(self.counts.items()) if not k.startswith("rejected.")},
            "seeds": len(self.seeds),
            "rounds": self.round,
            prompts_key: self.prompts_sent,
            "instructions": len(self.done),
            "records": n_records,
            "rejected": len(self.rejected),
        }
