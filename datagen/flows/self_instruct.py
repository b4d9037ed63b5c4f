"""The Self-Instruct recipe as a Prefect flow: coarse tasks, each a whole round or batch.

Thin wiring only: the algorithm is datagen.methods.self_instruct (datagen.methods.alpaca for the
Alpaca variant); claiming, teacher roles, budget, manifest and publish are datagen.flows.harness.
Flow parameters are plain JSON (they are stored by Prefect), never the API key: the teacher reads
that from the environment inside the flow.
"""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from datagen.crashpoints import crash_point
from datagen.flows.harness import Outcome, RunContext, run_recipe
from datagen.flows.stages import judge_stage
from datagen.methods.self_instruct import (MachineTask, SelfInstructParams, SelfInstructState, Templates,
                                           sampling_table)
from datagen.records import Record
from datagen.store.seeds import file_sha256, load_seeds
from datagen.teacher.client import Teacher


@task(name="bootstrap-round", cache_policy=NONE)
async def bootstrap_round(state: SelfInstructState, teacher: Teacher) -> int:
    accepted = await state.bootstrap_round(teacher)
    get_run_logger().info("round %d: %d new instruction%s accepted (pool %d, pending %d)",
                          state.round, accepted, "" if accepted == 1 else "s", len(state.machine), len(state.pending))
    return accepted


@task(name="classification-batch", cache_policy=NONE)
async def classification_batch(state: SelfInstructState, teacher: Teacher, batch: list[MachineTask]) -> None:
    await state.classify(teacher, batch)
    clf = sum(1 for t in batch if t.is_classification)
    get_run_logger().info("classified %d instructions: %d classification, %d generation", len(batch), clf, len(batch) - clf)


@task(name="instance-batch", cache_policy=NONE)
async def instance_batch(state: SelfInstructState, teacher: Teacher, batch: list[MachineTask]) -> None:
    before = len(state.done)
    await state.generate_instances(teacher, batch)
    target, done = state.params.num_instructions, len(state.done)
    extra = f"; {done - target} beyond the target are dropped at the end" if done > target else ""
    get_run_logger().info("instances: %d of %d instruction%s kept (%d of %d done%s)", done - before, len(batch),
                          "" if len(batch) == 1 else "s", min(done, target), target, extra)


@task(name="generate-overlapped", cache_policy=NONE)
async def overlapped_generation(state: SelfInstructState, teacher: Teacher, window: int) -> None:
    """Bootstrap, classification and instances in flight together (datagen.methods.overlapped)."""
    from datagen import progress
    from datagen.methods.overlapped import OverlappedRun

    prog = progress.current()
    run = OverlappedRun(state, window)

    def moved(r: OverlappedRun) -> None:
        prog.round = len(r.prompts)
        prog.accepted = min(r.with_instances, state.params.num_instructions)

    run.on_progress = moved
    await run.run(teacher)
    get_run_logger().info("overlapped generation (window %d): %d bootstrap prompts, %d instructions with instances "
                          "(%s)", window, len(run.prompts), len(state.done), state.stop_reason)


@task(name="filter", cache_policy=NONE)
def final_filter(state: SelfInstructState, model: str) -> list[Record]:
    state.finish()
    records = state.records(model)
    get_run_logger().info("%d instructions, %d records after filtering (%s)", len(state.done), len(records),
                          state.stop_reason)
    return records


@flow(name="self-instruct", log_prints=False, validate_parameters=False)
async def self_instruct_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: seeds, name, out, run_id, cache, params (SelfInstructParams fields, or AlpacaParams with
    variant "alpaca"), teacher (flags)."""
    return await run_recipe(run, "self-instruct", self_instruct_stages)


async def self_instruct_stages(ctx: RunContext) -> Outcome:
    """The method's stages over the harness's teacher: bootstrap, classify, instances, filter."""
    run = ctx.run
    if run.get("variant") == "alpaca":
        return await alpaca_stages(ctx)
    seeds = load_seeds(run["seeds"])
    params = SelfInstructParams(**night_params(ctx))
    templates = Templates.load(params.prompts_dir)
    state = SelfInstructState(seeds, params, templates)
    if ctx.earlier is not None:
        state.continue_from(ctx.earlier.instructions)
    prog, teacher = ctx.progress, ctx.teacher
    prog.target = params.num_instructions
    ctx.log.info("self-instruct: %d seeds from %s, target %d instructions, teacher %s (%s), %s schedule",
                 len(seeds), run["seeds"], params.num_instructions, teacher.model, ctx.config.public()["host"],
                 params.schedule)
    if params.schedule == "overlapped":
        window = params.window or ctx.config.max_concurrency
        prog.stage, prog.round = "generate (overlapped)", 0
        t0 = time.monotonic()
        await overlapped_generation(state, teacher, window)
        ctx.timed("generate", t0)
    while params.schedule == "sequential" and not state.finished():
        prog.stage, prog.round = "bootstrap", state.round + 1
        t0 = time.monotonic()
        if state.bootstrap_prompt_count():
            await bootstrap_round(state, teacher)
            crash_point("round.after_bootstrap")
        ctx.timed("bootstrap", t0)
        batch = state.take_batch()
        if not batch:
            continue
        prog.stage = "classify"
        t0 = time.monotonic()
        await classification_batch(state, teacher, batch)
        crash_point("round.after_classify")
        ctx.timed("classify", t0)
        prog.stage = "instances"
        t0 = time.monotonic()
        await instance_batch(state, teacher, batch)
        crash_point("round.after_instances")
        ctx.timed("instances", t0)
        prog.accepted = min(len(state.done), params.num_instructions)
    prog.stage = "filter"
    t0 = time.monotonic()
    records = final_filter(state, teacher.model)
    ctx.timed("filter", t0)
    prog.accepted = len(state.done)
    partial = None if state.stop_reason == "target_reached" else state.stop_reason
    outcome = Outcome(
        records=records, rejected=state.rejected, counts=state.summary_counts(len(records)),
        source={"path": str(run["seeds"]), "sha256": file_sha256(run["seeds"]), "count": len(seeds)},
        templates=templates.hashes(), sampling=sampling_table(params), partial=partial,
        partial_reason=state.stop_explanation(), budget_stop=state.budget_stop,
        stages=["bootstrap", "classify", "instances", "filter"],
        extra={"filters": {"rouge_l": {"threshold": params.rouge_threshold,
                                       "tokenizer": state.novelty.tokenizer_name}},
               **extend_section(ctx, params.seed, len(state.done))})
    judging = run.get("judging") or {"mode": "off"}
    if judging["mode"] != "off" and records:
        judged = await judge_stage(ctx, records, {**judging, "rouge_threshold": params.rouge_threshold},
                                   seed=params.seed, prompts_dir=params.prompts_dir)
        outcome.records, outcome.rejected = judged.records, [*outcome.rejected, *judged.rejected]
        outcome.counts = {**outcome.counts, "records": len(judged.records), "per_stage": {"judge": judged.counts}}
        outcome.templates.update(judged.templates)
        outcome.stages.append("judge")
    return outcome


def night_params(ctx: RunContext) -> dict[str, Any]:
    """The run's method settings; continuing a dataset, its seed is this night's (base --seed and the
    version about to be made), and the log says what the run starts from."""
    params = dict(ctx.run["params"])
    if ctx.earlier is not None:
        params["seed"] = ctx.earlier.seed(params["seed"])
        ctx.log.info("extending %s: %d records, %d instructions join the novelty index; seed %d (from --seed %d "
                     "and v%04d)", ctx.earlier.label, len(ctx.earlier.records), len(ctx.earlier.instructions),
                     params["seed"], ctx.run["params"]["seed"], ctx.earlier.next_version)
    return params


def extend_section(ctx: RunContext, seed: int, new_instructions: int) -> dict[str, Any]:
    """The manifest's `extend` section (the harness adds the parent and record counts)."""
    if not ctx.run.get("extend"):
        return {}
    earlier = ctx.earlier
    return {"extend": {"parent": earlier.label if earlier else None, "base_seed": ctx.run["params"]["seed"],
                       "seed": seed, "earlier_instructions": len(earlier.instructions) if earlier else 0,
                       "new_instructions": new_instructions}}


async def alpaca_stages(ctx: RunContext) -> Outcome:
    """The Alpaca variant: instruction, input and output written together, 20 per call."""
    from datagen.methods.alpaca import AlpacaParams, AlpacaState, AlpacaTemplates, sampling_table as alpaca_sampling

    run = ctx.run
    seeds = load_seeds(run["seeds"])
    params = AlpacaParams(**night_params(ctx))
    templates = AlpacaTemplates.load(params.prompts_dir)
    state = AlpacaState(seeds, params, templates)
    for text in ctx.earlier.instructions if ctx.earlier is not None else ():
        state.novelty.add(text)      # the variant's prompts show seeds only: the novelty index is what continues
    prog = ctx.progress
    prog.target = params.num_instructions
    ctx.log.info("self-instruct (alpaca variant): %d seeds from %s, target %d instructions, teacher %s",
                 len(seeds), run["seeds"], params.num_instructions, ctx.teacher.model)
    while not state.finished():
        prog.stage, prog.round = "generate", state.round + 1
        t0 = time.monotonic()
        await alpaca_round(state, ctx.teacher)
        crash_point("round.after_bootstrap")
        ctx.timed("generate", t0)
        prog.accepted = min(len(state.done), params.num_instructions)
    records = state.records(ctx.teacher.model)
    partial = None if state.stop_reason == "target_reached" else state.stop_reason
    return Outcome(
        records=records, rejected=state.rejected, counts=state.summary_counts(len(records)),
        source={"path": str(run["seeds"]), "sha256": file_sha256(run["seeds"]), "count": len(seeds)},
        templates=templates.hashes(), sampling=alpaca_sampling(params), partial=partial,
        partial_reason=state.stop_explanation(), budget_stop=state.budget_stop, stages=["generate"],
        extra={"variant": "alpaca", "filters": {"rouge_l": {"threshold": params.rouge_threshold,
                                                            "tokenizer": state.novelty.tokenizer_name}},
               **extend_section(ctx, params.seed, len(state.done))})


@task(name="alpaca-round", cache_policy=NONE)
async def alpaca_round(state: Any, teacher: Teacher) -> int:
    accepted = await state.bootstrap_round(teacher)
    get_run_logger().info("round %d: %d new instruction%s accepted", state.round, accepted,
                          "" if accepted == 1 else "s")
    return accepted


# The deployment entry point lives with the other recipes' (prefect.yaml names it there); kept importable here.
from datagen.flows.scheduled import scheduled_self_instruct  # noqa: E402,F401
