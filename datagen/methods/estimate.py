"""Dry-run cost estimates: requests, tokens and money for a run, without calling the teacher.

The plan is the run's own: the same round and batch rules (`prompts_for`, `batch_size`) played with
assumed yields; input tokens are counted with tiktoken on real prompts built from the real seeds and
templates; output tokens are assumed per request kind. Assumptions come from defaults or, better,
from a previous version's manifest (`--assume-from`), which also corrects for the teacher's own
tokenizer (its reported prompt tokens against our tiktoken estimate).
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from datagen.methods.self_instruct import (BOOTSTRAP_PARAMS, CLASSIFY_PARAMS, INSTANCE_MAX_TOKENS,
                                           SelfInstructParams, SelfInstructState, Templates, prompts_for)
from datagen.store.seeds import SeedTask
from datagen.teacher.budget import Prices
from datagen.teacher.tokens import count_tokens


@dataclass
class Assumptions:
    accepted_per_prompt: float = 3.0      # instructions a bootstrap prompt adds after the filters
    valid_instance_rate: float = 0.8      # share of accepted instructions that end with instances
    classification_rate: float = 0.3
    output_tokens: dict[str, float] | None = None   # mean completion tokens per kind
    prompt_token_ratio: float = 1.0       # teacher's prompt tokens / tiktoken's count
    source: str = "defaults"

    def __post_init__(self) -> None:
        for name, low, high in (("accepted_per_prompt", 0.0, 1000.0), ("valid_instance_rate", 0.0, 1.0),
                                ("classification_rate", 0.0, 1.0), ("prompt_token_ratio", 0.01, 100.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"assumptions.{name}: expected a number, got {v!r}")
            if not low <= v <= high or (name != "classification_rate" and v == 0):
                raise ValueError(f"assumptions.{name}: must be {'above' if low == 0 else 'at least'} {low:g} and at most "
                                 f"{high:g}, got {v}")
        if self.output_tokens is not None:
            if not isinstance(self.output_tokens, dict):
                raise ValueError(f"assumptions.output_tokens: expected a mapping of kind -> tokens, got {self.output_tokens!r}")
            for kind, v in self.output_tokens.items():
                if kind not in ("bootstrap", "classify", "instances"):
                    raise ValueError(f"assumptions.output_tokens: unknown kind '{kind}' (bootstrap, classify, instances)")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"assumptions.output_tokens.{kind}: expected a non-negative number, got {v!r}")

    def out_tokens(self, kind: str, cap: int) -> float:
        defaults = {"bootstrap": 150.0, "classify": 1.0, "instances": 120.0}
        return min(cap, (self.output_tokens or {}).get(kind, defaults[kind]))


def assumptions_from_manifest(manifest: dict[str, Any], source: str) -> Assumptions:
    """Measured yields and lengths of an earlier self-instruct version."""
    c = manifest.get("counts", {})
    usage = (manifest.get("usage") or [{}])[0]
    kinds = usage.get("by_kind") or {}
    a = Assumptions(source=source)
    prompts = c.get("bootstrap.prompts") or 0
    if prompts and c.get("bootstrap.accepted"):
        a.accepted_per_prompt = c["bootstrap.accepted"] / prompts
    tried = kinds.get("instances", {}).get("requests") or 0
    if tried:
        valid = c.get("instances.tasks_valid")      # counted by both schedules since 0.x; else derived
        if valid is None:
            valid = c.get("instructions", 0) + _rejected(manifest, "target", "beyond_target")
        a.valid_instance_rate = max(0.05, min(1.0, valid / tried))
    yes, no = c.get("classify.yes", 0), c.get("classify.no", 0)
    if yes + no:
        a.classification_rate = yes / (yes + no)
    a.output_tokens = {k: v["completion_tokens"] / v["requests"] for k, v in kinds.items() if v.get("requests")}
    est = sum(v.get("estimated_prompt_tokens", 0) for v in kinds.values())
    real = sum(v.get("prompt_tokens", 0) for v in kinds.values())
    if est and real:
        a.prompt_token_ratio = real / est
    return a


def _rejected(manifest: dict[str, Any], stage: str, reason: str) -> int:
    return (manifest.get("rejected") or {}).get(stage, {}).get(reason, 0)


def plan_requests(target: int, per_round: int, a: Assumptions, max_rounds: int = 10_000) -> dict[str, float]:
    """Requests per kind, playing the run's own round rules with the assumed yields."""
    done = pending = machine = 0.0
    sent = 0
    reqs = {"bootstrap": 0.0, "classify": 0.0, "instances": 0.0}
    for _ in range(max_rounds):
        need = target - done
        if need <= 1e-9:
            break
        n = prompts_for(need - pending, machine, sent, per_round)
        if n:
            sent += n
            reqs["bootstrap"] += n
            machine += n * a.accepted_per_prompt
            pending += n * a.accepted_per_prompt
        size = min(pending, need + math.ceil(need / 2))   # batch_size(), in expectation
        reqs["classify"] += size
        reqs["instances"] += size
        pending -= size
        done += size * a.valid_instance_rate
    return reqs


def estimate_self_instruct(seeds: list[SeedTask], params: SelfInstructParams, templates: Templates,
                           a: Assumptions, prices: Prices | None = None, model: str = "",
                           sample_prompts: int = 64) -> dict[str, Any]:
    state = SelfInstructState(seeds, params, templates)
    state.rng = random.Random(params.seed)
    reqs = plan_requests(params.num_instructions, params.prompts_per_round, a)
    # Real prompts: bootstrap lists sampled from the seeds as the run samples them; for the per-task
    # prompts the seed instructions stand in for the machine ones (same kind of text).
    boot = [count_tokens(p) for p, _ in state._bootstrap_prompts(sample_prompts)]
    sample = random.Random(params.seed).sample(seeds, min(sample_prompts, len(seeds)))
    clf = [count_tokens(templates.classify.render(instruction=s.instruction).rstrip()) for s in sample]
    inst_c = [count_tokens(templates.instances_clf.render(instruction=s.instruction).rstrip() + "\n") for s in sample]
    inst_g = [count_tokens(templates.instances_gen.render(instruction=s.instruction).rstrip() + "\n") for s in sample]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    inst_in = a.classification_rate * mean(inst_c) + (1 - a.classification_rate) * mean(inst_g)
    caps = {"bootstrap": params.sampling(BOOTSTRAP_PARAMS)["max_tokens"],
            "classify": params.sampling(CLASSIFY_PARAMS)["max_tokens"],
            "instances": params.sampling({"max_tokens": 0}, INSTANCE_MAX_TOKENS[False])["max_tokens"]}
    per_in = {"bootstrap": mean(boot), "classify": mean(clf), "instances": inst_in}
    rows = []
    for kind in ("bootstrap", "classify", "instances"):
        n = reqs[kind]
        tin = n * per_in[kind] * a.prompt_token_ratio
        tout = n * a.out_tokens(kind, caps[kind])
        rows.append({"kind": kind, "requests": round(n), "input_tokens": round(tin), "output_tokens": round(tout),
                     "max_output_tokens": round(n * caps[kind])})
    total_in = sum(r["input_tokens"] for r in rows)
    total_out = sum(r["output_tokens"] for r in rows)
    cost = prices.cost(model, total_in, total_out) if prices else None
    worst = prices.cost(model, total_in, sum(r["max_output_tokens"] for r in rows)) if prices else None
    return {"rows": rows, "requests": sum(r["requests"] for r in rows), "input_tokens": total_in,
            "output_tokens": total_out, "total_tokens": total_in + total_out, "cost_usd": cost,
            "cost_usd_if_every_output_hits_max_tokens": worst, "assumptions": asdict(a)}
