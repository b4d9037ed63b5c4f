"""The Evol-Instruct recipe as a Prefect flow: one task per evolution round, then the judge of hard
cases. The method is datagen.methods.evol; the run (claim, roles, budget, manifest, publish) is
datagen.flows.harness."""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from datagen.crashpoints import crash_point
from datagen.flows.harness import Outcome, RunContext, run_recipe
from datagen.flows.stages import StageResult, then_judge
from datagen.methods import evol
from datagen.methods.judge import JudgeTemplates
from datagen.records import Record


@task(name="evol-round", cache_policy=NONE)
async def evol_round(state: evol.EvolState, teacher: Any, judge: Any) -> int:
    kept = await state.evolve_round(teacher, judge)
    get_run_logger().info("evol round %d: %d of %d items evolved and survived (%d so far)", state.round, kept,
                          len(state.pool), len(state.survivors))
    return kept


async def evol_stage(ctx: RunContext, inputs: list[Record], params: dict[str, Any]) -> StageResult:
    p = evol.EvolParams(**params)
    templates = evol.EvolTemplates.load(p.prompts_dir)
    jt = JudgeTemplates.load(p.prompts_dir)
    state = evol.EvolState(inputs, p, templates, jt)
    prog = ctx.progress
    while not state.finished():
        prog.stage, prog.round = "evol", state.round + 1
        t0 = time.monotonic()
        await evol_round(state, ctx.teacher, ctx.judge)
        ctx.timed("evol", t0)
        prog.accepted = len(state.survivors)
        crash_point("evol.after_round")
    rates = state.pass_rates()
    counts = {"inputs": len(inputs), "rounds": state.round, "evolved": len(state.survivors),
              **{k: v for k, v in sorted(state.counts.items())}}
    return StageResult(state.survivors, state.rejected, counts,
                       templates={**templates.hashes(), jt.equal.name: jt.equal.sha256},
                       sampling={"evolve": p.sampling(evol.EVOLVE_PARAMS), "evol_answer": p.sampling(evol.ANSWER_PARAMS),
                                 "judge_equal": {"temperature": 0.0, "max_tokens": 6},
                                 "seed": "per request, from --seed, root id and round",
                                 "operation_weights": dict(zip(evol.OPERATIONS, p.op_weights()))},
                       extra={"evol": {**rates, "order": p.order, "rounds": p.rounds}},
                       budget_stop=state.budget_stop)


@flow(name="evol-instruct", log_prints=False, validate_parameters=False)
async def evol_instruct_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: input, name, out, run_id, cache, evol (EvolParams), judging (JudgeParams), teacher, judge."""
    return await run_recipe(run, "evol-instruct", evol_instruct_stages)


async def evol_instruct_stages(ctx: RunContext) -> Outcome:
    ctx.log.info("evol-instruct: %d rounds, teacher %s, judge %s", ctx.run["evol"]["rounds"], ctx.teacher.model,
                 ctx.judge.model)
    return await then_judge(ctx, "evol", evol_stage)
