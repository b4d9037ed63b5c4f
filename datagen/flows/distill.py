"""The distillation recipe as a Prefect flow: answers (best-of-K, multi-turn self-chat), then the
judge of hard cases. The method is datagen.methods.distill; the run is datagen.flows.harness."""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from datagen.crashpoints import crash_point
from datagen.flows.harness import Outcome, RunContext, run_recipe
from datagen.flows.stages import StageResult, then_judge
from datagen.methods import distill
from datagen.methods.judge import JudgeTemplates
from datagen.records import Record


@task(name="answer-pass", cache_policy=NONE)
async def answer_pass(state: distill.DistillState, teacher: Any, judge: Any) -> int:
    await state.run(teacher, judge)
    get_run_logger().info("answers: %d of %d instructions kept (%d turns, best of %d)", len(state.records),
                          len(state.inputs), state.params.turns, state.params.samples)
    return len(state.records)


async def distill_stage(ctx: RunContext, inputs: list[Record], params: dict[str, Any]) -> StageResult:
    p = distill.DistillParams(**params)
    templates = distill.DistillTemplates.load(p.prompts_dir)
    jt = JudgeTemplates.load(p.prompts_dir)
    state = distill.DistillState(inputs, p, templates, jt)
    ctx.progress.stage = "answer" if p.turns == 1 else f"self-chat ({p.turns} turns)"
    t0 = time.monotonic()
    await answer_pass(state, ctx.teacher, ctx.judge)
    ctx.timed("answer", t0)
    ctx.progress.accepted = len(state.records)
    crash_point("distill.after_answers")
    sampling = {"answer": p.sampling(distill.ANSWER_PARAMS), "seed": "per request, from --seed and input id"}
    if p.turns > 1:
        sampling["followup"] = p.sampling(distill.FOLLOWUP_PARAMS)
    tpl = templates.hashes() if p.turns > 1 else {}
    if p.samples > 1:
        tpl[jt.score.name] = jt.score.sha256
    counts = {"inputs": len(inputs), "answered": len(state.records), "turns": p.turns, "samples": p.samples,
              **dict(sorted(state.counts.items()))}
    return StageResult(state.records, state.rejected, counts, templates=tpl, sampling=sampling,
                       extra={"distill": {"turns": p.turns, "samples": p.samples, "system": p.system}},
                       budget_stop=state.budget_stop)


@flow(name="distill", log_prints=False, validate_parameters=False)
async def distill_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: input, name, out, run_id, cache, distill (DistillParams), judging (JudgeParams), teacher, judge."""
    return await run_recipe(run, "distill", distill_stages)


async def distill_stages(ctx: RunContext) -> Outcome:
    p = ctx.run["distill"]
    ctx.log.info("distill: %d turn(s), best of %d, teacher %s, judge %s", p["turns"], p["samples"], ctx.teacher.model,
                 ctx.judge.model)
    return await then_judge(ctx, "distill", distill_stage)
