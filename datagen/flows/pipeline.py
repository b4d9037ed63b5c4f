"""`datagen run pipeline --config configs/<x>.yaml`: the stages a YAML file declares, chained in one run
that publishes one version. Each stage is the same function its own recipe uses (self_instruct,
evol, answer, judge, dedup / filters), over the records the stage before it kept; every teacher call
goes through the response cache, so a pipeline killed mid-stage and run again replays what was
answered and asks only for the rest."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow

from datagen.flows.distill import distill_stage
from datagen.flows.evol_instruct import evol_stage
from datagen.flows.harness import Outcome, RunContext, run_recipe
from datagen.flows.self_instruct import self_instruct_stages
from datagen.flows.stages import StageResult, curate_stage, judge_stage, outcome_of
from datagen.records import Record
from datagen.store.sources import Source, load_instructions


@flow(name="pipeline", log_prints=False, validate_parameters=False)
async def pipeline_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: name, out, run_id, cache, input (or a first self_instruct stage), stages (see runspec)."""
    return await run_recipe(run, "pipeline", pipeline_stages)


async def pipeline_stages(ctx: RunContext) -> Outcome:
    run = ctx.run
    records: list[Record] = []
    source: Source | None = None
    n_inputs = 0
    if run.get("input"):
        records, source = load_instructions(run["input"], run["out"], flag=f"{run['config_path']}: input")
        n_inputs = len(records)
    inputs = list(records)
    done: list[tuple[str, StageResult]] = []
    for i, stage in enumerate(run["stages"], 1):
        kind, label = stage["kind"], f"{i}.{stage['kind']}"
        ctx.log.info("pipeline stage %s: %d records in", label, len(records))
        if kind == "self_instruct":
            sub = dataclasses.replace(ctx, run={**run, "seeds": stage["seeds"], "params": stage["params"],
                                                "variant": stage.get("variant")})
            made = await self_instruct_stages(sub)
            result = StageResult(made.records, made.rejected, made.counts, made.templates, made.sampling,
                                 made.extra, made.budget_stop)
            if source is None:
                source, n_inputs = Source(path=Path(stage["seeds"])), made.source["count"]
        elif kind == "evol":
            result = await evol_stage(ctx, records, stage["params"])
        elif kind == "answer":
            result = await distill_stage(ctx, records, stage["params"])
        elif kind == "judge":
            result = await judge_stage(ctx, records, stage["params"], seed=stage.get("seed", 42))
        elif kind == "curate":
            result = await curate_stage(ctx, records, stage["chain"], run.get("config_base"), where=stage["where"])
        else:   # runspec checked the names; this is a programming error
            raise ValueError(f"unknown pipeline stage {kind!r}")
        done.append((label, result))
        records = result.records
        if result.budget_stop:
            ctx.log.warning("pipeline: the budget stopped stage %s; later stages run on what it finished", label)
        if not records:
            break
    return outcome_of(run, source, n_inputs, done, inputs)
