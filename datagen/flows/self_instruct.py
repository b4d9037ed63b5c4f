"""The Self-Instruct recipe as a Prefect flow: coarse tasks, each a whole round or batch.

Thin wiring only: the algorithm is datagen.methods.self_instruct; the network is datagen.teacher.
Flow parameters are plain JSON (they are stored by Prefect), never the API key: the teacher reads
that from the environment inside the flow.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NONE

from datagen import progress
from datagen.crashpoints import crash_point
from datagen.errors import DatagenError
from datagen.methods.self_instruct import (MachineTask, SelfInstructParams, SelfInstructState, Templates,
                                           sampling_table)
from datagen.records import Record
from datagen.store.manifest import build_manifest, dataset_card
from datagen.store.seeds import file_sha256, load_seeds
from datagen.store.versions import DatasetStore
from datagen.teacher.cache import ResponseCache
from datagen.teacher.budget import Budget, Prices
from datagen.teacher.client import Teacher
from datagen.teacher.config import resolve_teacher_config
from datagen.teacher.embedded import EmbeddedTeacher


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


@task(name="filter", cache_policy=NONE)
def final_filter(state: SelfInstructState, model: str) -> list[Record]:
    state.finish()
    records = state.records(model)
    get_run_logger().info("%d instructions, %d records after filtering (%s)", len(state.done), len(records),
                          state.stop_reason)
    return records


@task(name="publish", cache_policy=NONE)
def publish(store: DatasetStore, run_id: str, records: list[Record], rejected: list[dict[str, Any]],
            manifest: dict[str, Any]) -> str:
    path = store.publish(run_id, records, rejected, manifest, dataset_card(store.name, manifest))
    get_run_logger().info("published %s (%d records)", path, len(records))
    return str(path)


@flow(name="self-instruct", log_prints=False, validate_parameters=False)
async def self_instruct_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: seeds, name, out, run_id, cache, params (SelfInstructParams fields), teacher (flags)."""
    log = get_run_logger()
    started = time.monotonic()
    timings: dict[str, float] = {}
    seeds = load_seeds(run["seeds"])
    params = SelfInstructParams(**run["params"])
    templates = Templates.load(params.prompts_dir)
    store = DatasetStore(run["out"], run["name"])
    cleaned = store.recover()
    if cleaned:
        log.info("cleaned the working state of %d interrupted or failed run(s): %s", len(cleaned), ", ".join(cleaned))
    claim = store.claim_run(run["run_id"])
    try:
        return await _generate_and_publish(run, store, claim, started, timings, seeds, params, templates)
    except BaseException as e:
        # Nothing half-written stays behind: the answers are in the cache, which is what resumes a run.
        # The working folder is kept only when the error names a file in it (the teacher's log).
        claim.release()
        store.discard_run(run["run_id"], unless_named_in=str(e))
        raise


async def _generate_and_publish(run: dict[str, Any], store: DatasetStore, claim: Any, started: float,
                                timings: dict[str, float], seeds: list, params: SelfInstructParams,
                                templates: Templates) -> dict[str, Any]:
    log = get_run_logger()
    crash_point("run.start")
    cfg = resolve_teacher_config(run.get("teacher", {}), run.get("teacher_yaml"))
    cache = ResponseCache(run["cache"])
    work = store.work_dir(run["run_id"])
    embedded = EmbeddedTeacher(log_path=work / "llama-server.log") if cfg.embedded else None
    state = SelfInstructState(seeds, params, templates)
    prog = progress.current()
    prog.target = params.num_instructions
    limits = run.get("budget") or {}
    budget = None
    if limits.get("max_cost_usd") is not None or limits.get("max_total_tokens") is not None:
        budget = Budget(max_cost_usd=limits.get("max_cost_usd"), max_total_tokens=limits.get("max_total_tokens"),
                        prices=Prices(run.get("prices") or {}), model=cfg.model or "")
        if limits.get("max_cost_usd") is not None and not budget.cost_enforced:
            log.warning("no price configured for model %r: --max-cost cannot be enforced, only token limits",
                        cfg.model)
    async with Teacher(cfg, cache, embedded=embedded, budget=budget) as teacher:
        prog.usages = [teacher.usage]
        log.info("self-instruct: %d seeds from %s, target %d instructions, teacher %s (%s)",
                 len(seeds), run["seeds"], params.num_instructions, teacher.model, cfg.public()["host"])

        def timed(stage: str, t0: float) -> None:
            timings[stage] = timings.get(stage, 0.0) + time.monotonic() - t0

        while not state.finished():
            prog.stage, prog.round = "bootstrap", state.round + 1
            t0 = time.monotonic()
            if state.bootstrap_prompt_count():
                await bootstrap_round(state, teacher)
                crash_point("round.after_bootstrap")
            timed("bootstrap", t0)
            batch = state.take_batch()
            if not batch:
                continue
            prog.stage = "classify"
            t0 = time.monotonic()
            await classification_batch(state, teacher, batch)
            crash_point("round.after_classify")
            timed("classify", t0)
            prog.stage = "instances"
            t0 = time.monotonic()
            await instance_batch(state, teacher, batch)
            crash_point("round.after_instances")
            timed("instances", t0)
            prog.accepted = min(len(state.done), params.num_instructions)
        if embedded is not None and embedded.model_path is not None:
            teacher_model_file = embedded.model_path.name
        else:
            teacher_model_file = None
        model = teacher.model
        teacher.usage.cost_usd = Prices(run.get("prices") or {}).cost(
            model, teacher.usage.prompt_tokens, teacher.usage.completion_tokens)
        usage = [teacher.usage.to_dict()]

    prog.stage = "filter"
    t0 = time.monotonic()
    records = final_filter(state, model)
    timings["filter"] = time.monotonic() - t0
    crash_point("filter.done")
    prog.accepted = len(state.done)
    counts = state.summary_counts(len(records))
    timings["total_before_publish"] = time.monotonic() - started
    teacher_info = {**cfg.public(), "model": model, "model_file": teacher_model_file,
                    "sampling": sampling_table(params)}
    partial = None if state.stop_reason == "target_reached" else state.stop_reason
    if partial == "budget" and not records:
        raise DatagenError(budget.too_small_message() if budget is not None and budget.refused else
                           f"{state.budget_stop}: the budget ran out before one instruction was made; nothing was published")
    if partial == "budget":
        log.warning("budget reached (%s): publishing the %d instructions made so far", state.budget_stop,
                    len(state.done))
    elif partial:
        log.warning("stopped early, %s", state.stop_explanation())
    manifest = build_manifest(
        recipe="self-instruct", run_id=run["run_id"],
        config={k: v for k, v in run.items() if k not in ("teacher",)} | {"teacher_flags": run.get("teacher", {})},
        seeds={"path": str(run["seeds"]), "sha256": file_sha256(run["seeds"]), "count": len(seeds)},
        templates=templates.hashes(), teacher=teacher_info, counts=counts, usage=usage, timings=timings,
        rejected=state.rejected, partial=partial,
        extra={"filters": {"rouge_l": {"threshold": params.rouge_threshold,
                                       "tokenizer": state.novelty.tokenizer_name}},
               "budget": budget.to_dict() if budget else None,
               "partial_reason": state.stop_explanation() or None},
    )
    prog.stage = "publish"
    path = publish(store, run["run_id"], records, state.rejected, manifest)
    cache.close()
    claim.release()
    crash_point("flow.done")
    prog.stage = "done"
    return {"path": path, "manifest": json.loads((Path(path) / "manifest.json").read_text()),
            "flow_run_id": str(runtime.flow_run.id)}



@flow(name="self-instruct-scheduled", log_prints=False)
async def scheduled_self_instruct(seeds: str = "seeds/175.jsonl", num_instructions: int = 100,
                                  name: str = "self-instruct", out: str = "outputs", seed: int = 42,
                                  base_url: str | None = None, model: str | None = None,
                                  config: str | None = None) -> str:
    """Entry point for `prefect deploy` (see prefect.yaml): plain parameters a schedule can carry,
    built into the same run as `datagen run self-instruct` with those flags. Keys come from the
    worker's environment (OPENAI_API_KEY), never from the deployment."""
    from datagen.runspec import load_config, self_instruct_run

    cfg_path = Path(config) if config else None
    run, _, _ = self_instruct_run(
        seeds=Path(seeds), name=name, out=Path(out), cfg=load_config(cfg_path), config_path=cfg_path,
        teacher_flags={"base_url": base_url, "model": model},
        params={"num_instructions": num_instructions, "seed": seed})
    result = await self_instruct_flow(run)
    return result["path"]
