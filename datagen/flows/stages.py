"""Stages a recipe or a pipeline chains: records in, records out, with what each stage rejected and
counted. Each stage is one coarse Prefect task (a round, a pass), never one task per LLM call."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from datagen.flows.harness import Outcome, RunContext
from datagen.methods import judge as judging
from datagen.records import Record
from datagen.store.seeds import file_sha256


@dataclass
class StageResult:
    records: list[Record]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    budget_stop: str = ""


@task(name="judge-pass", cache_policy=NONE)
async def _judge_pass(records: list[Record], judge: Any, templates: judging.JudgeTemplates,
                      params: judging.JudgeParams, seed: int):
    kept, rejected, counts = await judging.judge_records(records, judge, templates, params, seed)
    get_run_logger().info("judge (%s): %d of %d records judged, %d below %d, %d kept", params.mode,
                          counts["judged"], counts["records"], counts["below_min_score"], params.min_score, len(kept))
    return kept, rejected, counts


async def judge_stage(ctx: RunContext, records: list[Record], params: dict[str, Any], seed: int = 42,
                      prompts_dir: str | None = None) -> StageResult:
    """Score hard cases (or all, or none) and drop those under min_score; usage counts as the judge's."""
    p = judging.JudgeParams(**params)
    if p.mode == "off" or not records:
        return StageResult(records, counts={"mode": p.mode, "judged": 0})
    templates = judging.JudgeTemplates.load(prompts_dir)
    prog = ctx.progress
    prog.stage = "judge"
    t0 = time.monotonic()
    kept, rejected, counts = await _judge_pass(records, ctx.judge, templates, p, seed)
    ctx.timed("judge", t0)
    return StageResult(kept, rejected, {"mode": p.mode, "min_score": p.min_score, **counts},
                       templates={templates.score.name: templates.score.sha256},
                       sampling={"judge_score": judging.SCORE_PARAMS})


@task(name="curate-pass", cache_policy=NONE)
def _curate_pass(records: list[Record], chain: list[Any], base: str | None, where: str):
    from datagen.methods.curate import build_chain, run_chain

    steps = build_chain(chain, Path(base) if base else None, where=where)
    kept: list[Record] = []
    rejected: list[dict[str, Any]] = []
    totals = run_chain(records, steps, kept.append, rejected.append)
    get_run_logger().info("dedup/filters: %d in, %d kept", totals["in"], totals["kept"])
    return kept, rejected, {"in": totals["in"], "kept": totals["kept"],
                            "per_step": {s.name: dict(sorted(s.counts.items())) for s in steps}}


async def curate_stage(ctx: RunContext, records: list[Record], chain: list[Any], base: str | None = None,
                       where: str = "config") -> StageResult:
    """The dedup / filter steps of `datagen dedup` / `datagen filter`, over the records in hand."""
    ctx.progress.stage = "dedup/filters"
    t0 = time.monotonic()
    kept, rejected, counts = _curate_pass(records, chain, base, where)
    ctx.timed("curate", t0)
    return StageResult(kept, rejected, counts, extra={"filters": chain})


def ancestors_of(records: list[Record], pool: list[Record]) -> list[Record]:
    """The records of `pool` that `records` descend from (following parents), minus `records` themselves."""
    by_id = {r.id: r for r in pool}
    published = {r.id for r in records}
    seen: set[str] = set()
    todo = [p for r in records for p in r.parents]
    while todo:
        rid = todo.pop()
        if rid in seen or rid in published or rid not in by_id:
            continue
        seen.add(rid)
        todo.extend(by_id[rid].parents)
    return [r for r in pool if r.id in seen]


def outcome_of(run: dict[str, Any], source: Any, n_inputs: int, stages: list[tuple[str, StageResult]],
               inputs: list[Record] | None = None) -> Outcome:
    """One Outcome from a chain of stages: the last stage's records, every stage's rejects and counts,
    and the inputs and intermediate records the published ones descend from (lineage.jsonl)."""
    records = stages[-1][1].records
    pool = list(inputs or [])
    for _, s in stages[:-1]:
        pool.extend(s.records)
    pool.extend(r for _, s in stages[-1:] for r in s.records)
    rejected = [row for _, s in stages for row in s.rejected]
    templates: dict[str, str] = {}
    sampling: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, s in stages:
        templates.update(s.templates)
        if s.sampling:
            sampling[name] = s.sampling
        extra.update(s.extra)
    budget_stop = next((s.budget_stop for _, s in stages if s.budget_stop), "")
    counts = {"inputs": n_inputs, "records": len(records),
              "instructions": len({r.instruction for r in records}), "rejected": len(rejected),
              "per_stage": {name: s.counts for name, s in stages}}
    path = source.path
    return Outcome(records=records, rejected=rejected, counts=counts,
                   source={"path": str(path), "sha256": file_sha256(path), "count": n_inputs},
                   templates=templates, sampling=sampling, extra=extra, parent=source.parent,
                   partial="budget" if budget_stop else None, partial_reason=budget_stop, budget_stop=budget_stop,
                   stages=[name for name, _ in stages], ancestors=ancestors_of(records, pool))


async def then_judge(ctx: RunContext, recipe: str, stage) -> Outcome:
    """A recipe that starts from instructions: read `--input`, run the method's stage on them with the
    run's `<recipe>` settings, then the judge of hard cases; the Outcome of both."""
    from datagen.store.sources import load_instructions

    run = ctx.run
    params = run[recipe]
    inputs, source = load_instructions(run["input"], run["out"])
    ctx.log.info("%s: %d instructions from %s", recipe, len(inputs), run["input"])
    made = await stage(ctx, inputs, params)
    judged = await judge_stage(ctx, made.records, run["judging"], seed=params["seed"],
                               prompts_dir=params.get("prompts_dir"))
    return outcome_of(run, source, len(inputs), [(recipe, made), ("judge", judged)], inputs)
