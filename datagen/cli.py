"""The `datagen` command. Parses flags and YAML config, starts a flow, shows progress and a summary.

Errors a user can fix (DatagenError) print as one line and exit 2 (1 for an endpoint that stays down);
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from datagen import progress
from datagen.errors import DatagenError

app = typer.Typer(help="datagen: manufacture instruction-tuning data with a teacher LLM, dedup it, publish "
                       "versioned datasets (Alpaca / ShareGPT / OpenAI messages).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)   # plain help: rich's boxes cut URLs and paths at 80 columns
run_app = typer.Typer(help="Run a recipe and publish a new dataset version.", no_args_is_help=True,
                      rich_markup_mode=None)
teacher_app = typer.Typer(help="The teacher LLM endpoint.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(run_app, name="run")
app.add_typer(teacher_app, name="teacher")

console = Console(stderr=True)


class Api(str, Enum):
    completions = "completions"
    chat = "chat"


class Tokenizer(str, Enum):
    rouge_score = "rouge_score"
    unicode = "unicode"


def _prefect_defaults() -> None:
    """Offline-friendly Prefect settings, set before Prefect is imported; the user's own win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def _progress_view(p: progress.Progress, started: float) -> Table:
    t = p.totals()
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{p.stage}[/] round {p.round}",
        f"instructions [bold green]{p.accepted}[/]/{p.target}" if p.target else f"kept [bold green]{p.accepted:,}[/]",
        f"requests {t['requests']}",
        f"cache hits {t['cache_hits']}",
        f"retries {t['retries']}",
        f"tokens {t['tokens']:,}",
        f"{time.monotonic() - started:5.0f} s",
    )
    return table


def _run_with_progress(start, target: int = 0, cache: str | None = None) -> None:
    """Run a flow under a live progress line (a plain log line every PLAIN_PROGRESS_S without a
    terminal), then print the summary table and the version's path. A run that fails or is
    interrupted says what is saved and how to resume."""
    prog = progress.install(progress.Progress(target=target))
    started = time.monotonic()
    try:
        if console.is_terminal:
            with Live(get_renderable=lambda: _progress_view(prog, started), console=console,
                      refresh_per_second=4, transient=True, redirect_stdout=False, redirect_stderr=False):
                result = _run_and_settle(start)
        else:
            with progress.PlainReporter(prog, started, _plain_line, PLAIN_PROGRESS_S):
                result = _run_and_settle(start)
    except (DatagenError, KeyboardInterrupt) as e:
        hint = _resume_hint(cache)
        if hint:
            global _pending_hint
            _pending_hint = hint     # printed by main() after the error line
        raise e
    console.print(_summary(result, time.monotonic() - started))
    print(result["path"])


PLAIN_PROGRESS_S = float(os.environ.get("DATAGEN_PROGRESS_INTERVAL_S", "15"))
_pending_hint: str | None = None


def _run_and_settle(start) -> dict[str, Any]:
    result = start()
    if result.get("flow_run_id"):
        from datagen.flows.console import wait_until_recorded
        wait_until_recorded(result["flow_run_id"])
    return result


def _plain_line(p: progress.Progress, started: float) -> str:
    t = p.totals()
    done = f"instructions {p.accepted}/{p.target}" if p.target else f"kept {p.accepted:,}"
    return (f"progress: {p.stage} round {p.round}, {done}, requests {t['requests']}, cache hits {t['cache_hits']}, "
            f"retries {t['retries']}{_retry_detail(p)}, tokens {t['tokens']:,}, {time.monotonic() - started:.0f} s")


def _retry_detail(p: progress.Progress) -> str:
    causes: dict[str, int] = {}
    for u in p.usages:
        for cause, n in u.retries.items():
            causes[cause] = causes.get(cause, 0) + n
    return f" ({', '.join(f'{c} {n}' for c, n in sorted(causes.items()))})" if causes else ""


def _resume_hint(cache: str | None) -> str | None:
    """'N answers are cached': what a failed or interrupted run has kept, and that rerunning resumes."""
    if not cache or not Path(cache).exists():
        return None
    import sqlite3
    try:
        db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
        n = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        db.close()
    except sqlite3.Error:
        return None
    if not n:
        return None
    return (f"{n:,} teacher answer{'s are' if n != 1 else ' is'} cached in {cache}; run the same command "
            "again to resume (cached answers cost no calls)")


def _summary(result: dict[str, Any], wall: float) -> Table:
    m = result["manifest"]
    c = m["counts"]
    table = Table(title=f"datagen {m['recipe']}: {m['dataset']} {m['version']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if "in" in c:
        table.add_row("kept", f"{c['records']:,} of {c['in']:,} records")
    else:
        table.add_row("kept", f"{c['instructions']} instructions, {c['records']} records")
    for stage, reasons in m["rejected"].items():
        table.add_row(f"rejected ({stage})", ", ".join(f"{r} {n}" for r, n in reasons.items()))
    if m.get("parent"):
        table.add_row("parent", m["parent"])
    for u in m["usage"]:
        table.add_row(f"{u['role']} usage",
                      f"{u['requests']} requests, {u['cache_hits']} cache hits, "
                      f"{sum(u['retries'].values())} retries, {u['prompt_tokens']:,} in + "
                      f"{u['completion_tokens']:,} out tokens"
                      + (f", ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else ""))
    if m.get("partial"):
        why = m.get("partial_reason") or m["partial"]
        table.add_row("[yellow]partial[/]", f"stopped early ({why}): this version holds what was finished")
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("published", result["path"])
    return table


def _version(value: bool) -> None:
    if value:
        from datagen import __version__
        print(f"datagen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print datagen's version and exit.")) -> None:
    """datagen: manufacture instruction-tuning data with a teacher LLM, dedup it, publish versioned datasets."""


@run_app.command("self-instruct")
def run_self_instruct(
    seeds: Path = typer.Option(..., "--seeds", help="Seed tasks: Self-Instruct JSONL, Alpaca JSON/JSONL, or .txt (one instruction per line)."),
    num_instructions: Optional[int] = typer.Option(None, "--num-instructions", "-n", min=1, help="New instructions (each with valid instances) to generate (default 10)."),
    name: str = typer.Option("self-instruct", "--name", help="Dataset name: versions go to OUT/NAME/vNNNN."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for prompt sampling (same seed + same answers = same dataset; default 42)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else the embedded llama.cpp teacher)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name at the endpoint (required with --base-url)."),
    api: Optional[Api] = typer.Option(None, "--api", help="completions (default; legacy endpoint, as the paper) or chat (same prompts as chat messages)."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", min=1, help="Requests in flight at once (default 8)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Cap every request's max_tokens (the paper's values otherwise)."),
    prompts_per_round: Optional[int] = typer.Option(None, "--prompts-per-round", min=1, help="Bootstrap prompts per round at most (default 8)."),
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
) -> None:
    """Bootstrap new tasks from seed tasks with Self-Instruct and publish a dataset version."""
    from datagen.runspec import load_config, self_instruct_run
    from datagen.teacher.budget import Prices
    from datagen.teacher.preflight import check_endpoint

    if refresh and no_cache:
        raise DatagenError("--refresh / --no-cache: pick one (--refresh asks again and overwrites; --no-cache "
                           "neither reads nor writes)")
    cfg = load_config(config)
    teacher_flags = {"base_url": base_url, "model": model, "api": api.value if api else None,
                     "max_concurrency": max_concurrency, "rpm": rpm, "tpm": tpm,
                     "batch_api": True if batch_api else None,
                     "cache_mode": "refresh" if refresh else ("off" if no_cache else None)}
    run, teacher_cfg, params = self_instruct_run(
        seeds=seeds, name=name, out=out, cfg=cfg, config_path=config, teacher_flags=teacher_flags, cache=cache,
        max_cost=max_cost, max_total_tokens=max_total_tokens,
        params={"num_instructions": num_instructions, "seed": seed, "prompts_per_round": prompts_per_round,
                "rouge_tokenizer": rouge_tokenizer.value if rouge_tokenizer else None, "max_tokens": max_tokens,
                "prompts_dir": str(prompts_dir.resolve()) if prompts_dir else None})
    prices = Prices(run["prices"])
    if assume_from and not dry_run:
        raise DatagenError("--assume-from: only used with --dry-run (it calibrates the estimate); add --dry-run or drop it")
    if dry_run:
        _dry_run(seeds, params, cfg.get("assumptions") or {}, assume_from, out, prices, teacher_cfg)
        return
    check_endpoint(teacher_cfg)
    _prefect_defaults()
    from datagen.flows.console import quiet_user_errors
    from datagen.flows.self_instruct import self_instruct_flow
    quiet_user_errors()

    import asyncio

    _run_with_progress(lambda: asyncio.run(self_instruct_flow(run)), target=params.get("num_instructions", 10),
                       cache=run["cache"])


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


def _curate(recipe: str, source: str, chain: list, chain_base: Optional[Path], chain_where: str,
            name: Optional[str], out: Path) -> None:
    from datagen.methods.curate import build_chain
    from datagen.runspec import new_run_id
    from datagen.store.sources import check_source, resolve_source
    from datagen.store.versions import check_name

    from datagen.store.versions import check_writable_dir

    check_writable_dir(out, "--out")
    src = resolve_source(source, out)
    build_chain(chain, chain_base, where=chain_where)  # validate before Prefect starts
    check_source(src)  # an empty or unreadable first row fails here, not inside a flow
    if name is None:
        name = src.dataset or src.path.stem
        try:
            check_name(name)
        except DatagenError:
            raise DatagenError(f"--name: the file name '{name}' is not a valid dataset name (letters, digits, "
                               "'.', '_', '-'); give --name") from None
    check_name(name)
    out_dir = src.out if (src.dataset and name == src.dataset and src.out) else out
    run = {
        "source": {"path": str(src.path.resolve()), "dataset": src.dataset, "version": src.version,
                   "out": str(src.out) if src.out else None},
        "name": name, "out": str(out_dir.resolve()), "recipe": recipe,
        "run_id": new_run_id(),
        "chain": chain, "chain_base": str(chain_base) if chain_base else None, "chain_where": chain_where,
    }
    _prefect_defaults()
    from datagen.flows.console import quiet_user_errors
    from datagen.flows.curate import curate_flow
    quiet_user_errors()

    _run_with_progress(lambda: curate_flow(run))


@app.command("dedup")
def dedup(
    source: str = typer.Argument(..., help="A dataset name (NAME or NAME@v3) under --out, a dataset/version folder, or a .jsonl/.json/.txt file."),
    exact: bool = typer.Option(True, "--exact/--no-exact", help="Drop exact duplicates after normalisation (NFKC, case, whitespace)."),
    minhash: bool = typer.Option(True, "--minhash/--no-minhash", help="Drop near-duplicates with MinHash LSH."),
    minhash_threshold: float = typer.Option(0.8, "--minhash-threshold", min=0.01, max=1.0, help="Estimated Jaccard at which two records are duplicates."),
    num_perm: int = typer.Option(128, "--num-perm", min=2, help="MinHash permutations."),
    shingle: str = typer.Option("word", "--shingle", help="Shingle unit: word or char."),
    shingle_size: Optional[int] = typer.Option(None, "--shingle-size", min=1, help="Shingle length (default 3 words / 5 chars)."),
    rouge: bool = typer.Option(False, "--rouge", help="Also apply Self-Instruct's ROUGE-L novelty rule to instructions."),
    rouge_threshold: float = typer.Option(0.7, "--rouge-threshold", help="Drop when ROUGE-L F with an earlier instruction exceeds this."),
    rouge_tokenizer: Tokenizer = typer.Option(Tokenizer.rouge_score, "--rouge-tokenizer", help="rouge_score (faithful) or unicode (every script)."),
    decontaminate: Optional[list[Path]] = typer.Option(None, "--decontaminate", help="Eval set(s) (JSONL or text): drop records sharing an n-gram with them."),
    ngram: int = typer.Option(13, "--ngram", min=1, help="n for --decontaminate."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset to publish into (default: the source dataset, or the file's stem)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
) -> None:
    """Remove duplicates from a version or file and publish the result as a new version."""
    from datagen.filters.minhash import DEFAULT_SHINGLE_SIZE, MAX_NUM_PERM

    if shingle not in DEFAULT_SHINGLE_SIZE:
        raise DatagenError(f"--shingle: '{shingle}' is not one of {', '.join(DEFAULT_SHINGLE_SIZE)}")
    if num_perm > MAX_NUM_PERM:
        raise DatagenError(f"--num-perm: {num_perm} is more than {MAX_NUM_PERM}")
    if not 0.0 <= rouge_threshold <= 1.0:
        raise DatagenError(f"--rouge-threshold: {rouge_threshold} is not in [0, 1]")
    for p in decontaminate or []:
        if not p.is_file():
            raise DatagenError(f"--decontaminate: {p}: eval file not found")
    chain: list[Any] = []
    if exact:
        chain.append("exact_dedup")
    if minhash:
        chain.append({"minhash": {"threshold": minhash_threshold, "num_perm": num_perm, "shingle": shingle,
                                  "shingle_size": shingle_size}})
    if rouge:
        chain.append({"rouge": {"threshold": rouge_threshold, "tokenizer": rouge_tokenizer.value}})
    if decontaminate:
        chain.append({"decontaminate": {"paths": [str(p.resolve()) for p in decontaminate], "n": ngram}})
    if not chain:
        raise DatagenError("dedup: every method is switched off; keep at least one of --exact, --minhash, --rouge")
    _curate("dedup", source, chain, None, "flags", name, out)


@app.command("filter")
def filter_(
    source: str = typer.Argument(..., help="A dataset name (NAME or NAME@v3) under --out, a dataset/version folder, or a .jsonl/.json/.txt file."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `filters:` — a list of steps run in the order written, e.g. [exact_dedup, {minhash: {threshold: 0.85}}, {language: {allowed: [en]}}, refusal]."),
    decontaminate: Optional[list[Path]] = typer.Option(None, "--decontaminate", help="Eval set(s) (JSONL or text) to decontaminate against, appended to the chain."),
    ngram: int = typer.Option(13, "--ngram", min=1, help="n for --decontaminate."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset to publish into (default: the source dataset, or the file's stem)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
) -> None:
    """Run a filter chain (quality heuristics, language, dedup, decontamination) and publish a new version."""
    from datagen.filters.heuristics import DEFAULT_CHAIN

    from datagen.runspec import load_config

    if config is not None and config.exists() and not config.is_file():  # a folder, or a pipe that would hang
        raise DatagenError(f"--config: {config} is not a regular YAML file")
    try:
        cfg = load_config(config)
    except UnicodeDecodeError as e:
        raise DatagenError(f"{config}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise DatagenError(f"{config}: cannot read config ({e.strerror})") from None
    chain = cfg.get("filters") if config else list(DEFAULT_CHAIN)
    if not isinstance(chain, list):
        raise DatagenError(f"{config}: expected `filters:` with a list of steps")
    chain = list(chain)
    for p in decontaminate or []:
        if not p.is_file():
            raise DatagenError(f"--decontaminate: {p}: eval file not found")
    if decontaminate:
        chain.append({"decontaminate": {"paths": [str(p.resolve()) for p in decontaminate], "n": ngram}})
    _curate("filter", source, chain, config.resolve().parent if config else None, str(config or "filters"), name, out)


@app.command("why")
def why(
    dataset: str = typer.Argument(..., help="NAME (searches LATEST, its parents, then the other versions, newest first) or NAME@vN (that version only)."),
    record_id: str = typer.Argument(..., help="The record id (or its first characters), from records.jsonl or rejected.jsonl; a later copy of an identical row is <id>-2, <id>-3, ..."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
) -> None:
    """Say whether a record was kept, or at which stage and for what reason it was dropped."""
    from datagen.store.why import explain_spec

    ans = explain_spec(out, dataset, record_id)
    where = f"{ans['version']} ({ans['version_dir']})"
    if ans["searched"]:
        where += f"; not in {', '.join(ans['searched'])}"
    if ans["status"] == "kept":
        r = ans["record"]
        console.print("[green]kept[/] " + escape(f"{r.get('id', '')} in {where}: {r.get('instruction', '')[:200]!r}"), highlight=False)
        if r.get("scores"):
            console.print(f"scores: {json.dumps(r['scores'], ensure_ascii=False)[:500]}", highlight=False, markup=False)
        return
    console.print("[red]dropped[/] " + escape(f"{ans['id']} in {where} at stage {ans['stage']}: {ans['reason']}"),
                  highlight=False)
    console.print(f"text: {ans['text'][:300]!r}", highlight=False, markup=False)
    detail = {k: v for k, v in ans["detail"].items() if k not in ("most_similar",)}
    for key in ("rouge_max", "jaccard_estimate", "score"):
        if key in detail:
            console.print(f"{key}: {detail.pop(key)}", highlight=False, markup=False)
    if "most_similar" in ans["detail"]:
        ms = ans["detail"]["most_similar"]
        console.print(f"most similar: {json.dumps(ms[:3] if isinstance(ms, list) else ms, ensure_ascii=False)[:500]}", highlight=False, markup=False)
    if "collided_with" in ans:
        other = ans["collided_with"]
        console.print(f"collided with {other.get('id')}: {other.get('instruction', other.get('text', ''))[:300]!r}", highlight=False, markup=False)
    if detail:
        console.print(f"detail: {json.dumps(detail, ensure_ascii=False)[:800]}", highlight=False, markup=False)


@teacher_app.command("serve")
def teacher_serve(
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Port on 127.0.0.1 (default: a free one)."),
) -> None:
    """Run the embedded llama.cpp teacher (SmolLM2-135M-Instruct) in the foreground; Ctrl-C stops it."""
    import socket

    from datagen.teacher.embedded import MODEL_ALIAS, EmbeddedTeacher

    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as e:
                raise DatagenError(f"--port: cannot listen on 127.0.0.1:{port} ({e.strerror or e}); "
                                   "choose another port or leave --port out") from None

    server = EmbeddedTeacher(port=port)
    try:
        url = server.start()
        print(url, flush=True)
        console.print(f"serving {MODEL_ALIAS} (OpenAI-compatible) at {url}; use --base-url {url} "
                      f"--model {MODEL_ALIAS}; Ctrl-C to stop")
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
        if server.proc is not None:
            raise DatagenError(f"embedded teacher: llama.cpp server exited with code {server.proc.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _print_pending_hint() -> None:
    if _pending_hint:
        console.print(f"nothing was published; {_pending_hint}", highlight=False, soft_wrap=True)


def main() -> None:
    from typer import exceptions as typer_errors
    from typer._click import exceptions as click_errors  # typer vendors click

    try:
        code = app(standalone_mode=False)
    except DatagenError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True, markup=True)
        _print_pending_hint()
        sys.exit(e.exit_code)
    except click_errors.NoArgsIsHelpError as e:
        print(e.ctx.get_help())
        sys.exit(0)
    except click_errors.ClickException as e:   # a bad flag or value: one line, like our own errors
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        console.print(f"[red]error:[/] {escape(e.format_message())}{hint}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except (typer_errors.Abort, KeyboardInterrupt):
        console.print("[yellow]interrupted[/]" + ("" if _pending_hint else ": nothing was published"), highlight=False)
        _print_pending_hint()
        sys.exit(130)
    if code == 130:          # click turns Ctrl-C inside a command into its Abort exit code
        console.print("[yellow]interrupted[/]" + ("" if _pending_hint else ": nothing was published"), highlight=False)
        _print_pending_hint()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
