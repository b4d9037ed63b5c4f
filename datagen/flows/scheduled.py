"""Entry points for `prefect deploy` (see prefect.yaml): one flow per recipe with plain parameters a
schedule can carry, each built into exactly the run its `datagen run ...` / `datagen filter` command
would build (datagen.runspec), checked the same way, then handed to the recipe's flow.

Keys never travel in parameters: the teacher reads OPENAI_API_KEY (and the other DATAGEN_* / OPENAI_*
settings) from the worker's environment. Relative paths (seeds, input files, out, config) are taken
from the worker's working directory, which prefect.yaml's `pull:` step sets to $DATAGEN_HOME.

`extend` (default True) asks a recipe to grow the dataset it publishes into, continuing from its
LATEST version instead of starting over; it is passed to the flow as run["extend"], which the
recipe's extend support reads (a recipe without it runs as before).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger


def _config(config: str | None) -> tuple[Path | None, dict[str, Any]]:
    from datagen.runspec import load_config
    path = Path(config) if config else None
    return path, load_config(path)


def _teacher_flags(base_url: str | None, model: str | None, max_concurrency: int | None = None) -> dict[str, Any]:
    return {"base_url": base_url, "model": model, "max_concurrency": max_concurrency}


async def _launch(flow_path: str, run: dict[str, Any], teacher_cfg: Any, cfg: dict[str, Any],
                  config_path: Path | None, extend: bool, dask: tuple[str | None, int | None] = (None, None)) -> str:
    """What `datagen run` does before its flow starts (translation settings, the endpoints answer, the
    runner: `dask_address` or `dask_workers` = --runner dask), then the recipe's flow as a subflow of
    this one; returns the published version's path."""
    import importlib

    from datagen.flows.dask_runner import with_runner
    from datagen.runspec import add_translation, check_scheduler, runner_spec
    from datagen.teacher.config import resolve_role_config
    from datagen.teacher.preflight import check_endpoint

    add_translation(run, cfg=cfg, config_path=config_path, teacher_cfg=teacher_cfg, languages=None)
    check_endpoint(teacher_cfg)
    for role, flags, section in (("judge", run.get("judge", {}), run.get("judge_yaml")),
                                 ("translator", run.get("translator", {}), run.get("translator_yaml"))):
        if role == "translator" and not run.get("translate"):
            continue
        own = resolve_role_config(role, flags, section, teacher_cfg)
        if own is not None and not own.embedded:
            check_endpoint(own)
    address, workers = dask
    spec = runner_spec("dask" if address or workers else "local", address, workers, teacher_cfg)
    if spec.kind != "local":
        run["runner"] = spec.to_dict()
        check_scheduler(run)
    run["extend"] = bool(extend)
    module, _, attr = flow_path.rpartition(".")
    result = await with_runner(getattr(importlib.import_module(module), attr), run)(run)
    return result["path"]


@flow(name="self-instruct-scheduled", log_prints=False)
async def scheduled_self_instruct(seeds: str = "seeds/175.jsonl", num_instructions: int = 100,
                                  name: str = "self-instruct", out: str = "outputs", seed: int = 42,
                                  base_url: str | None = None, model: str | None = None,
                                  config: str | None = None, max_cost: float | None = None,
                                  extend: bool = True, dask_address: str | None = None,
                                  dask_workers: int | None = None) -> str:
    """`datagen run self-instruct --seeds SEEDS -n NUM_INSTRUCTIONS --name NAME --out OUT --seed SEED
    [--base-url --model --config --max-cost]`; returns the published version's path."""
    from datagen.runspec import self_instruct_run

    cfg_path, cfg = _config(config)
    run, teacher_cfg, _ = self_instruct_run(
        seeds=Path(seeds), name=name, out=Path(out), cfg=cfg, config_path=cfg_path,
        teacher_flags=_teacher_flags(base_url, model), max_cost=max_cost,
        params={"num_instructions": num_instructions, "seed": seed})
    return await _launch("datagen.flows.self_instruct.self_instruct_flow", run, teacher_cfg, cfg, cfg_path, extend,
                         (dask_address, dask_workers))


async def _recipe(recipe: str, flow_path: str, *, input: str, name: str, out: str, config: str | None,
                  base_url: str | None, model: str | None, max_cost: float | None, params: dict[str, Any],
                  extend: bool, dask: tuple[str | None, int | None]) -> str:
    from datagen.runspec import recipe_run

    cfg_path, cfg = _config(config)
    run, teacher_cfg = recipe_run(recipe, input=input, name=name, out=Path(out), cfg=cfg, config_path=cfg_path,
                                  teacher_flags=_teacher_flags(base_url, model), judge_flags={}, params=params,
                                  judging={}, max_cost=max_cost)
    return await _launch(flow_path, run, teacher_cfg, cfg, cfg_path, extend, dask)


@flow(name="evol-instruct-scheduled", log_prints=False)
async def scheduled_evol_instruct(input: str, name: str = "evol-instruct", out: str = "outputs",
                                  rounds: int | None = None, seed: int | None = None,
                                  base_url: str | None = None, model: str | None = None,
                                  config: str | None = None, max_cost: float | None = None,
                                  extend: bool = True, dask_address: str | None = None,
                                  dask_workers: int | None = None) -> str:
    """`datagen run evol-instruct --input INPUT --name NAME --out OUT [--rounds --seed --base-url --model
    --config --max-cost]`; INPUT is a dataset name (its LATEST at run time) or a file."""
    return await _recipe("evol", "datagen.flows.evol_instruct.evol_instruct_flow", input=input, name=name, out=out,
                         config=config, base_url=base_url, model=model, max_cost=max_cost, extend=extend,
                         params={"rounds": rounds, "seed": seed}, dask=(dask_address, dask_workers))


@flow(name="distill-scheduled", log_prints=False)
async def scheduled_distill(input: str, name: str = "distill", out: str = "outputs", turns: int | None = None,
                            samples: int | None = None, system: str | None = None, seed: int | None = None,
                            base_url: str | None = None, model: str | None = None, config: str | None = None,
                            max_cost: float | None = None, extend: bool = True, dask_address: str | None = None,
                             dask_workers: int | None = None) -> str:
    """`datagen run distill --input INPUT --name NAME --out OUT [--turns --samples --system --seed
    --base-url --model --config --max-cost]`."""
    return await _recipe("distill", "datagen.flows.distill.distill_flow", input=input, name=name, out=out,
                         config=config, base_url=base_url, model=model, max_cost=max_cost, extend=extend,
                         params={"turns": turns, "samples": samples, "system": system, "seed": seed},
                         dask=(dask_address, dask_workers))


@flow(name="pipeline-scheduled", log_prints=False)
async def scheduled_pipeline(config: str, name: str | None = None, out: str = "outputs",
                             base_url: str | None = None, model: str | None = None,
                             max_cost: float | None = None, extend: bool = True, dask_address: str | None = None,
                             dask_workers: int | None = None) -> str:
    """`datagen run pipeline --config CONFIG [--name --out --base-url --model --max-cost]`."""
    from datagen.errors import DatagenError
    from datagen.runspec import pipeline_run

    if not config:
        raise DatagenError("config: required, the pipeline YAML (e.g. configs/alpaca-style.yaml)")
    cfg_path, cfg = _config(config)
    run, teacher_cfg = pipeline_run(config_path=cfg_path, cfg=cfg, out=Path(out), name=name,
                                    teacher_flags=_teacher_flags(base_url, model), judge_flags={},
                                    max_cost=max_cost)
    return await _launch("datagen.flows.pipeline.pipeline_flow", run, teacher_cfg, cfg, cfg_path, extend,
                         (dask_address, dask_workers))


def refilter_run(dataset: str, out: Path, config: str | None) -> dict[str, Any] | None:
    """The `datagen filter DATASET [--config CONFIG] --out OUT` run over the dataset's LATEST, published
    into the same dataset; None when LATEST is already this chain's output (nothing new to filter)."""
    import json

    from datagen.errors import DatagenError
    from datagen.filters.heuristics import DEFAULT_CHAIN
    from datagen.methods.curate import build_chain
    from datagen.runspec import new_run_id
    from datagen.store.sources import check_source, parse_dataset_spec, resolve_source
    from datagen.store.versions import check_writable_dir

    check_writable_dir(out, "out")
    name, version = parse_dataset_spec(dataset)
    if version is not None or "/" in dataset:
        raise DatagenError(f"dataset: give a dataset name, not a version or a path (a re-filter reads LATEST): {dataset!r}")
    cfg_path, cfg = _config(config)
    chain = list(cfg.get("filters") or []) if cfg_path else list(DEFAULT_CHAIN)
    if cfg_path and not chain:
        raise DatagenError(f"{cfg_path}: expected `filters:` with a list of steps")
    base = cfg_path.resolve().parent if cfg_path else None
    where = str(cfg_path or "filters")
    build_chain(chain, base, where=where)
    src = resolve_source(name, out)
    check_source(src)
    latest = json.loads((src.path.parent / "manifest.json").read_text(encoding="utf-8"))
    if latest.get("recipe") == "filter" and (latest.get("config") or {}).get("chain") == chain:
        return None
    return {"source": {"path": str(src.path.resolve()), "dataset": src.dataset, "version": src.version,
                       "out": str(Path(src.out).resolve())},
            "name": name, "out": str(Path(src.out).resolve()), "recipe": "filter", "run_id": new_run_id(),
            "chain": chain, "chain_base": str(base) if base else None, "chain_where": where}


@flow(name="refilter-scheduled", log_prints=False)
def scheduled_refilter(dataset: str, out: str = "outputs", config: str | None = None) -> str:
    """`datagen filter DATASET [--config CONFIG] --out OUT`: the filter chain (the default quality chain,
    or CONFIG's `filters:`) over DATASET's LATEST, published as its next version. When LATEST already is
    this chain's output, nothing is published and LATEST's path is returned. No teacher, no cost."""
    from datagen.flows.curate import curate_flow
    from datagen.store.versions import DatasetStore

    run = refilter_run(dataset, Path(out), config)
    if run is None:
        store = DatasetStore(Path(out), dataset)
        latest = store.resolve(None)
        get_run_logger().info("%s: LATEST (%s) is already this filter chain's output; nothing to re-filter",
                              dataset, latest.name)
        return str(latest)
    return curate_flow(run)["path"]
