"""`datagen run <recipe>`: resolve a run's settings, check them and the endpoint, run the flow."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from datagen.cli.app import Api, JudgeMode, Schedule, Tokenizer, Variant, run_app
from datagen.cli.output import console, plain_progress_interval, prefect_defaults, run_with_progress
from datagen.errors import DatagenError


# Options the recipes share (evol-instruct, distill, pipeline; self-instruct the translate ones), declared once: each
# call makes a fresh Typer option with the same flag and help everywhere.
_SHARED = {
    "base_url": (("--base-url",), {"help": "OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else the embedded llama.cpp teacher)."}),
    "model": (("--model",), {"help": "Model name at the endpoint (required with --base-url)."}),
    "judge_min_score": (("--judge-min-score",), {"help": "Judged records scoring below this (1-10, default 5) are rejected."}),
    "judge_base_url": (("--judge-base-url",), {"help": "The judge's own endpoint (default: the teacher's)."}),
    "judge_model": (("--judge-model",), {"help": "The judge's model (required with --judge-base-url)."}),
    "max_concurrency": (("--max-concurrency",), {"min": 1, "help": "Requests in flight at once (default 8)."}),
    "cache": (("--cache",), {"help": "Response cache file (default OUT/.cache/responses.sqlite)."}),
    "max_cost": (("--max-cost",), {"min": 0, "help": "Stop before the estimated cost (USD, from `prices:`) would exceed this; publish what is done."}),
    "max_total_tokens": (("--max-total-tokens",), {"min": 1, "help": "Stop before input+output tokens would exceed this; publish what is done."}),
    "rpm": (("--rpm",), {"min": 1, "help": "Requests per minute at most."}),
    "tpm": (("--tpm",), {"min": 1, "help": "Tokens per minute at most."}),
    "refresh": (("--refresh",), {"help": "Ask again for every request and overwrite cached answers."}),
    "no_cache": (("--no-cache",), {"help": "Neither read nor write the response cache."}),
    "translate": (("--translate",), {"help": "Also translate every published record into these languages, e.g. zh,fr,de (langdetect codes); the version holds originals and verified translations."}),
    "translator_base_url": (("--translator-base-url",), {"help": "The translator's own endpoint (default: the teacher's)."}),
    "translator_model": (("--translator-model",), {"help": "The translator's model (required with --translator-base-url)."}),
    "dask_address": (("--dask-address",), {"help": "With --runner dask: the scheduler of an existing Dask cluster, tcp://HOST:PORT (default: a LocalCluster started for the run)."}),
    "dask_workers": (("--dask-workers",), {"min": 1, "help": "With --runner dask and no --dask-address: worker processes of the LocalCluster (default 2)."}),
}


class Runner(str, Enum):
    local = "local"
    dask = "dask"


def runner_option():
    return typer.Option(Runner.local, "--runner", help="local (default: this process sends the teacher requests) or dask (the requests run on Dask workers through Prefect's DaskTaskRunner; cache, dedup and budget stay here; see README 'Scaling out').")


def shared(name: str):
    flags, kw = _SHARED[name]
    return typer.Option(False if name in ("refresh", "no_cache") else None, *flags, **kw)


@run_app.command("self-instruct")
def run_self_instruct(
    seeds: Path = typer.Option(..., "--seeds", help="Seed tasks: Self-Instruct JSONL, Alpaca JSON/JSONL, or .txt (one instruction per line)."),
    num_instructions: Optional[int] = typer.Option(None, "--num-instructions", "-n", min=1, help="New instructions (each with valid instances) to generate (default 10)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name: versions go to OUT/NAME/vNNNN (default self-instruct; with --extend, that dataset)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    extend: Optional[str] = typer.Option(None, "--extend", help="Grow this dataset (NAME under --out, or its folder): continue from its LATEST, -n new instructions none of which is a near-duplicate of one published, sampling seeded from --seed and the new version's number; the new version holds the earlier records and the new."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for prompt sampling (same seed + same answers = same dataset; default 42)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else the embedded llama.cpp teacher)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name at the endpoint (required with --base-url)."),
    api: Optional[Api] = typer.Option(None, "--api", help="completions (default; legacy endpoint, as the paper) or chat (same prompts as chat messages)."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", min=1, help="Requests in flight at once (default 8)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Cap every request's max_tokens (the paper's values otherwise)."),
    prompts_per_round: Optional[int] = typer.Option(None, "--prompts-per-round", min=1, help="Bootstrap prompts per round at most (default 8; sequential schedule)."),
    schedule: Optional[Schedule] = typer.Option(None, "--schedule", help="overlapped (default: bootstrap, classification and instances in flight together, up to --max-concurrency) or sequential (the released code's round-by-round loop)."),
    window: Optional[int] = typer.Option(None, "--window", min=1, help="Overlapped schedule: prompt k samples the pool as it stood after answer k-W (default: --max-concurrency). Same seeds, --seed and window = same dataset."),
    rouge_tokenizer: Optional[Tokenizer] = typer.Option(None, "--rouge-tokenizer", help="rouge_score (default; faithful, drops non-Latin text) or unicode (dedups every script)."),
    prompts_dir: Optional[Path] = typer.Option(None, "--prompts", help="Folder with your own prompt templates (prompts/self_instruct/*.txt layout)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Response cache file (default OUT/.cache/responses.sqlite)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="Stop issuing requests before the estimated cost (USD, from `prices:` in the config) would exceed this; publish what is done."),
    max_total_tokens: Optional[int] = typer.Option(None, "--max-total-tokens", min=1, help="Stop before input+output tokens would exceed this; publish what is done."),
    rpm: Optional[float] = typer.Option(None, "--rpm", min=1, help="Requests per minute at most (also learned from x-ratelimit-* headers)."),
    tpm: Optional[float] = typer.Option(None, "--tpm", min=1, help="Tokens per minute at most (also learned from x-ratelimit-* headers)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (teacher:, self_instruct:, prices:, budget:, assumptions:); flags and environment override it."),
    refresh: bool = typer.Option(False, "--refresh", help="Ask the teacher again for every request and overwrite the cached answers."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the response cache."),
    batch_api: bool = typer.Option(False, "--batch-api", help="Send requests through the provider's Batch API (/v1/files + /v1/batches): cheaper, slower; resumes by batch id after a restart."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Estimate requests, tokens and cost from the real prompts; call nothing, publish nothing."),
    assume_from: Optional[str] = typer.Option(None, "--assume-from", help="For --dry-run: take yields and output lengths from an earlier version (NAME[@vN] under --out, or a manifest.json)."),
    variant: Variant = typer.Option(Variant.self_instruct, "--variant", help="self-instruct (default: the paper's pipeline) or alpaca (Stanford Alpaca: 20 instructions with input and output per call, 3 seeds per prompt)."),
    judge: Optional[JudgeMode] = typer.Option(None, "--judge", help="Judge the finished records: off (default, as the paper), hard (only those cheap signals flag: ROUGE-L just under the threshold, length near a bound, one-label classification, short or hedging outputs) or all."),
    judge_min_score: Optional[int] = typer.Option(None, "--judge-min-score", help="Judged records scoring below this (1-10, default 5) are rejected."),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="The judge's own endpoint (default: the teacher's)."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="The judge's model (required with --judge-base-url)."),
    translate: Optional[str] = shared("translate"),
    translator_base_url: Optional[str] = shared("translator_base_url"),
    translator_model: Optional[str] = shared("translator_model"),
    runner: Runner = runner_option(),
    dask_address: Optional[str] = shared("dask_address"),
    dask_workers: Optional[int] = shared("dask_workers"),
) -> None:
    """Bootstrap new tasks from seed tasks with Self-Instruct and publish a dataset version."""
    from datagen.runspec import load_config, self_instruct_run
    from datagen.teacher.budget import Prices
    from datagen.teacher.preflight import check_endpoint

    if refresh and no_cache:
        raise DatagenError("--refresh / --no-cache: pick one (--refresh asks again and overwrites; --no-cache "
                           "neither reads nor writes)")
    if extend is not None:
        from datagen.runspec import extend_target
        name, out = extend_target(extend, out, name, variant.value)
    name = name or "self-instruct"
    cfg = load_config(config)
    teacher_flags = {"base_url": base_url, "model": model, "api": api.value if api else None,
                     "max_concurrency": max_concurrency, "rpm": rpm, "tpm": tpm,
                     "batch_api": True if batch_api else None,
                     "cache_mode": "refresh" if refresh else ("off" if no_cache else None)}
    run, teacher_cfg, params = self_instruct_run(
        seeds=seeds, name=name, out=out, cfg=cfg, config_path=config, teacher_flags=teacher_flags, cache=cache,
        max_cost=max_cost, max_total_tokens=max_total_tokens, variant=variant.value, extend=extend is not None,
        judge_flags={"base_url": judge_base_url, "model": judge_model},
        judging={"mode": judge.value if judge else None, "min_score": judge_min_score},
        params={"num_instructions": num_instructions, "seed": seed, "prompts_per_round": prompts_per_round,
                "rouge_tokenizer": rouge_tokenizer.value if rouge_tokenizer else None, "max_tokens": max_tokens,
                "prompts_dir": str(prompts_dir.resolve()) if prompts_dir else None,
                **({"schedule": schedule.value if schedule else None, "window": window}
                   if variant is Variant.self_instruct else {})})
    _translation(run, cfg, config, teacher_cfg, translate, translator_base_url, translator_model)
    _runner(run, teacher_cfg, runner, dask_address, dask_workers)
    prices = Prices(run["prices"])
    if assume_from and not dry_run:
        raise DatagenError("--assume-from: only used with --dry-run (it calibrates the estimate); add --dry-run or drop it")
    if dry_run and variant is Variant.alpaca:
        raise DatagenError("--dry-run: estimates the self-instruct variant only; drop --variant alpaca or --dry-run")
    if dry_run:
        _dry_run(seeds, params, cfg.get("assumptions") or {}, assume_from, out, prices, teacher_cfg)
        return
    plain_progress_interval()          # a bad value is an error now, not after the endpoint check
    check_endpoint(teacher_cfg)
    _check_translator(run, teacher_cfg)
    _check_cluster(run)
    prefect_defaults()
    _check_prefect_api(run)
    from datagen.flows.console import quiet_user_errors
    from datagen.flows.dask_runner import with_runner
    from datagen.flows.self_instruct import self_instruct_flow
    quiet_user_errors()

    import asyncio

    run_with_progress(lambda: asyncio.run(with_runner(self_instruct_flow, run)(run)),
                      target=params.get("num_instructions", 10),
                      cache=None if teacher_cfg.cache_mode == "off" else run["cache"])


def _common_flags(base_url, model, max_concurrency, rpm, tpm, refresh, no_cache) -> dict[str, Any]:
    if refresh and no_cache:
        raise DatagenError("--refresh / --no-cache: pick one (--refresh asks again and overwrites; --no-cache "
                           "neither reads nor writes)")
    return {"base_url": base_url, "model": model, "max_concurrency": max_concurrency, "rpm": rpm, "tpm": tpm,
            "cache_mode": "refresh" if refresh else ("off" if no_cache else None)}


def _translation(run: dict[str, Any], cfg: dict[str, Any], config: Optional[Path], teacher_cfg: Any,
                 translate: Optional[str], base_url: Optional[str], model: Optional[str]) -> None:
    from datagen.runspec import add_translation
    add_translation(run, cfg=cfg, config_path=config, teacher_cfg=teacher_cfg, languages=translate,
                    translator_flags={"base_url": base_url, "model": model})


def _check_translator(run: dict[str, Any], teacher_cfg: Any) -> None:
    """The translator's own endpoint answers, when the run translates and the translator has one."""
    from datagen.teacher.config import resolve_role_config
    from datagen.teacher.preflight import check_endpoint

    if not run.get("translate"):
        return
    cfg = resolve_role_config("translator", run.get("translator", {}), run.get("translator_yaml"), teacher_cfg)
    if cfg is not None and not cfg.embedded:
        check_endpoint(cfg)


def _runner(run: dict[str, Any], teacher_cfg: Any, runner: Runner, address: Optional[str],
            workers: Optional[int]) -> None:
    """run["runner"] for --runner dask (absent: local), checked against the other flags."""
    from datagen.runspec import runner_spec

    spec = runner_spec(runner.value, address, workers, teacher_cfg)
    if spec.kind != "local":
        run["runner"] = spec.to_dict()


def _check_cluster(run: dict[str, Any]) -> None:
    from datagen.runspec import check_scheduler
    check_scheduler(run)


def _check_prefect_api(run: dict[str, Any]) -> None:
    """Dask workers report their task runs to the flow's Prefect server: it must be one they can reach,
    not the temporary server of this process."""
    import os

    if (run.get("runner") or {}).get("kind") == "dask" and not os.environ.get("PREFECT_API_URL"):
        raise DatagenError("--runner dask: the workers report to the flow's Prefect server, and this run has only "
                           "a temporary one: set PREFECT_API_URL (or unset DATAGEN_PREFECT_SERVER=ephemeral so "
                           "datagen keeps its background server)")


def _launch(flow_name: str, run: dict[str, Any], teacher_cfg: Any, judge_cfg_needed: bool = True) -> None:
    import asyncio
    import importlib

    from datagen.flows.console import quiet_user_errors
    from datagen.teacher.config import resolve_role_config
    from datagen.teacher.preflight import check_endpoint

    plain_progress_interval()
    check_endpoint(teacher_cfg)
    judge_cfg = resolve_role_config("judge", run.get("judge", {}), run.get("judge_yaml"), teacher_cfg)
    if judge_cfg_needed and judge_cfg is not None and not judge_cfg.embedded:
        check_endpoint(judge_cfg)
    _check_translator(run, teacher_cfg)
    _check_cluster(run)
    prefect_defaults()
    _check_prefect_api(run)
    from datagen.flows.dask_runner import with_runner
    module, _, attr = flow_name.rpartition(".")
    flow_fn = with_runner(getattr(importlib.import_module(module), attr), run)
    quiet_user_errors()
    run_with_progress(lambda: asyncio.run(flow_fn(run)), target=0,
                      cache=None if teacher_cfg.cache_mode == "off" else run["cache"])


@run_app.command("evol-instruct")
def run_evol_instruct(
    input: str = typer.Option(..., "--input", help="Instructions to evolve: a dataset (NAME[@vN] under --out), a seed file, Alpaca JSON/JSONL, or .txt (one per line)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Evolution rounds M (default 4)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Operation weights, e.g. breadth=2,deepening=1 (others 1; default uniform). Ops: add_constraints, deepening, concretizing, increase_reasoning, complicate_input, breadth."),
    name: str = typer.Option("evol-instruct", "--name", help="Dataset name: versions go to OUT/NAME/vNNNN."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets (and where --input names are looked up)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for operations and sampling (default 42)."),
    base_url: Optional[str] = shared("base_url"), model: Optional[str] = shared("model"),
    judge: Optional[JudgeMode] = typer.Option(None, "--judge", help="Which evolved records the judge scores: hard (default: only those cheap signals flag), all, off. Rule 1's Equal check always runs."),
    judge_min_score: Optional[int] = shared("judge_min_score"),
    judge_base_url: Optional[str] = shared("judge_base_url"),
    judge_model: Optional[str] = shared("judge_model"),
    max_concurrency: Optional[int] = shared("max_concurrency"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Cap every request's max_tokens."),
    prompts_dir: Optional[Path] = typer.Option(None, "--prompts", help="Folder with your own templates (prompts/evol/*.txt, prompts/judge/score.txt layout)."),
    cache: Optional[Path] = shared("cache"),
    max_cost: Optional[float] = shared("max_cost"),
    max_total_tokens: Optional[int] = shared("max_total_tokens"),
    rpm: Optional[float] = shared("rpm"),
    tpm: Optional[float] = shared("tpm"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (teacher:, judge:, evol:, judging:, prices:, budget:)."),
    refresh: bool = shared("refresh"),
    no_cache: bool = shared("no_cache"),
    translate: Optional[str] = shared("translate"),
    translator_base_url: Optional[str] = shared("translator_base_url"),
    translator_model: Optional[str] = shared("translator_model"),
    runner: Runner = runner_option(),
    dask_address: Optional[str] = shared("dask_address"),
    dask_workers: Optional[int] = shared("dask_workers"),
) -> None:
    """Evolve instructions with Evol-Instruct (M rounds, with elimination) and publish the survivors."""
    from datagen.runspec import load_config, parse_weights, recipe_run

    if rounds is not None and rounds < 1:
        raise DatagenError(f"--rounds: must be at least 1, got {rounds}")
    flags = _common_flags(base_url, model, max_concurrency, rpm, tpm, refresh, no_cache)
    cfg = load_config(config)
    run, teacher_cfg = recipe_run(
        "evol", input=input, name=name, out=out, cfg=cfg, config_path=config, teacher_flags=flags,
        judge_flags={"base_url": judge_base_url, "model": judge_model}, cache=cache, max_cost=max_cost,
        max_total_tokens=max_total_tokens,
        params={"rounds": rounds, "seed": seed, "weights": parse_weights(weights), "max_tokens": max_tokens,
                "prompts_dir": str(prompts_dir.resolve()) if prompts_dir else None},
        judging={"mode": judge.value if judge else None, "min_score": judge_min_score})
    _translation(run, cfg, config, teacher_cfg, translate, translator_base_url, translator_model)
    _runner(run, teacher_cfg, runner, dask_address, dask_workers)
    _launch("datagen.flows.evol_instruct.evol_instruct_flow", run, teacher_cfg)


@run_app.command("distill")
def run_distill(
    input: str = typer.Option(..., "--input", help="Instructions to answer: a dataset (NAME[@vN] under --out), a seed file, Alpaca JSON/JSONL, or .txt (one per line)."),
    turns: Optional[int] = typer.Option(None, "--turns", help="User turns per conversation (default 1: one answer; N > 1: self-chat, 2N messages ending on the assistant)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Answers drawn per instruction; the judge's best is kept (default 1)."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt for every conversation (kept in the record's system field)."),
    name: str = typer.Option("distill", "--name", help="Dataset name: versions go to OUT/NAME/vNNNN."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets (and where --input names are looked up)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling (default 42)."),
    base_url: Optional[str] = shared("base_url"), model: Optional[str] = shared("model"),
    judge: Optional[JudgeMode] = typer.Option(None, "--judge", help="Which answers the judge scores: hard (default: only flagged ones), all, off. --samples > 1 always scores every sample."),
    judge_min_score: Optional[int] = shared("judge_min_score"),
    judge_base_url: Optional[str] = shared("judge_base_url"),
    judge_model: Optional[str] = shared("judge_model"),
    max_concurrency: Optional[int] = shared("max_concurrency"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Cap every request's max_tokens (answers: 1024 otherwise)."),
    keep_truncated: bool = typer.Option(False, "--keep-truncated", help="Keep answers cut by max_tokens (rejected as answer_cut_by_length otherwise)."),
    prompts_dir: Optional[Path] = typer.Option(None, "--prompts", help="Folder with your own templates (prompts/distill/followup.txt, prompts/judge/score.txt)."),
    cache: Optional[Path] = shared("cache"),
    max_cost: Optional[float] = shared("max_cost"),
    max_total_tokens: Optional[int] = shared("max_total_tokens"),
    rpm: Optional[float] = shared("rpm"),
    tpm: Optional[float] = shared("tpm"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (teacher:, judge:, distill:, judging:, prices:, budget:)."),
    refresh: bool = shared("refresh"),
    no_cache: bool = shared("no_cache"),
    translate: Optional[str] = shared("translate"),
    translator_base_url: Optional[str] = shared("translator_base_url"),
    translator_model: Optional[str] = shared("translator_model"),
    runner: Runner = runner_option(),
    dask_address: Optional[str] = shared("dask_address"),
    dask_workers: Optional[int] = shared("dask_workers"),
) -> None:
    """Have the teacher answer instructions (or hold multi-turn conversations; best of K) and publish."""
    from datagen.runspec import load_config, recipe_run

    flags = _common_flags(base_url, model, max_concurrency, rpm, tpm, refresh, no_cache)
    cfg = load_config(config)
    run, teacher_cfg = recipe_run(
        "distill", input=input, name=name, out=out, cfg=cfg, config_path=config, teacher_flags=flags,
        judge_flags={"base_url": judge_base_url, "model": judge_model}, cache=cache, max_cost=max_cost,
        max_total_tokens=max_total_tokens,
        params={"turns": turns, "samples": samples, "system": system, "seed": seed, "max_tokens": max_tokens,
                "keep_truncated": True if keep_truncated else None,
                "prompts_dir": str(prompts_dir.resolve()) if prompts_dir else None},
        judging={"mode": judge.value if judge else None, "min_score": judge_min_score})
    _translation(run, cfg, config, teacher_cfg, translate, translator_base_url, translator_model)
    _runner(run, teacher_cfg, runner, dask_address, dask_workers)
    _launch("datagen.flows.distill.distill_flow", run, teacher_cfg)


@run_app.command("pipeline")
def run_pipeline(
    config: Path = typer.Option(..., "--config", help="Pipeline YAML: name, input, stages (self_instruct, evol, answer, judge, dedup, filters, publish), teacher:, judge:, prices:, budget:. See configs/."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: the config's name:, else its file name)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets (and where an input name is looked up)."),
    base_url: Optional[str] = shared("base_url"), model: Optional[str] = shared("model"),
    judge_base_url: Optional[str] = shared("judge_base_url"),
    judge_model: Optional[str] = shared("judge_model"),
    max_concurrency: Optional[int] = shared("max_concurrency"),
    cache: Optional[Path] = shared("cache"),
    max_cost: Optional[float] = shared("max_cost"),
    max_total_tokens: Optional[int] = shared("max_total_tokens"),
    rpm: Optional[float] = shared("rpm"),
    tpm: Optional[float] = shared("tpm"),
    refresh: bool = shared("refresh"),
    no_cache: bool = shared("no_cache"),
    translate: Optional[str] = shared("translate"),
    translator_base_url: Optional[str] = shared("translator_base_url"),
    translator_model: Optional[str] = shared("translator_model"),
    runner: Runner = runner_option(),
    dask_address: Optional[str] = shared("dask_address"),
    dask_workers: Optional[int] = shared("dask_workers"),
) -> None:
    """Run the stages a YAML config chains (e.g. self_instruct -> evol -> answer -> judge -> dedup) as one run
    that publishes one version."""
    from datagen.runspec import load_config, pipeline_run

    flags = _common_flags(base_url, model, max_concurrency, rpm, tpm, refresh, no_cache)
    if not config.is_file():
        raise DatagenError(f"--config: {config}: {'not a regular file' if config.exists() else 'file not found'}")
    cfg = load_config(config)
    run, teacher_cfg = pipeline_run(config_path=config, cfg=cfg, out=out, name=name, teacher_flags=flags,
                                    judge_flags={"base_url": judge_base_url, "model": judge_model}, cache=cache,
                                    max_cost=max_cost, max_total_tokens=max_total_tokens)
    _translation(run, cfg, config, teacher_cfg, translate, translator_base_url, translator_model)
    _runner(run, teacher_cfg, runner, dask_address, dask_workers)
    _launch("datagen.flows.pipeline.pipeline_flow", run, teacher_cfg)


def _dry_run(seeds: Path, params: dict[str, Any], assumed: dict[str, Any], assume_from: Optional[str],
             out: Path, prices: Any, teacher_cfg: Any) -> None:
    from datagen.methods.estimate import Assumptions, assumptions_from_manifest, estimate_self_instruct
    from datagen.methods.self_instruct import SelfInstructParams, Templates
    from datagen.store.seeds import load_seeds

    if assume_from:
        manifest, source = _generating_manifest(assume_from, out)
        a = assumptions_from_manifest(manifest, source)
    else:
        try:
            a = Assumptions(**assumed, source="config" if assumed else "defaults")
        except TypeError as e:
            raise DatagenError(f"config: assumptions: {e}") from None
    p = SelfInstructParams(**params)
    model = teacher_cfg.model or ("SmolLM2-135M-Instruct" if teacher_cfg.embedded else "")
    est = estimate_self_instruct(load_seeds(seeds), p, Templates.load(p.prompts_dir), a, prices, model)
    table = Table(title=f"dry run: self-instruct, {p.num_instructions} instructions (assumptions: {a.source})")
    for col in ("requests", "input tokens", "output tokens", "max output tokens"):
        table.add_column(col, justify="right")
    table.add_column("kind", justify="left")
    for r in est["rows"]:
        table.add_row(f"{r['requests']:,}", f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                      f"{r['max_output_tokens']:,}", r["kind"])
    table.add_row(f"{est['requests']:,}", f"{est['input_tokens']:,}", f"{est['output_tokens']:,}", "", "total",
                  style="bold")
    console.print(table)
    if est["cost_usd"] is not None:
        console.print(f"estimated cost: ${est['cost_usd']:.4f} (at most ${est['cost_usd_if_every_output_hits_max_tokens']:.4f} "
                      "if every answer ran to max_tokens)")
    else:
        console.print(f"no price configured for '{model}' (config `prices:`): tokens only")
    print(json.dumps({**est, "settings": {"self_instruct": params, "teacher": teacher_cfg.public()}}))


def _generating_manifest(assume_from: str, out: Path) -> tuple[dict[str, Any], str]:
    """The manifest of the self-instruct run whose yields to assume: NAME[@vN] or a manifest.json,
    following `parent` from a dedup/filter version back to the version that generated the data."""
    from datagen.store.versions import DatasetStore

    path = Path(assume_from)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        name, _, version = assume_from.partition("@")
        path = DatasetStore(out, name).resolve(version or None) / "manifest.json"
    chain = []
    for _ in range(100):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DatagenError(f"--assume-from: cannot read {path}: {e}") from None
        label = f"{manifest.get('dataset', path.parent.parent.name)}@{manifest.get('version', path.parent.name)}"
        chain.append(label)
        if manifest.get("recipe") == "self-instruct":
            return manifest, " <- ".join(chain) if len(chain) > 1 else str(path)
        parent = manifest.get("parent")
        if not parent:
            raise DatagenError(f"--assume-from: {label} was made by '{manifest.get('recipe')}' and names no parent "
                               "self-instruct version to take yields from")
        name, _, version = parent.partition("@")
        root = path.parent.parent.parent
        path = DatasetStore(root, name).resolve(version or None) / "manifest.json"
    raise DatagenError(f"--assume-from: the parent chain of {assume_from} does not end")
