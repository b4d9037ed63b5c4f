"""`datagen translate <dataset>[@vN] --to zh,fr`: translate a published version's records with the
translator role and publish the originals plus the verified translations as a new version whose
parent is the source version — of the same dataset (in the store folder the source lives in), or of
`--name NEW` under `--out`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from datagen.cli.app import app
from datagen.cli.run import _check_translator, _common_flags, shared


@app.command("translate")
def translate(
    dataset: str = typer.Argument(..., help="The version to translate: NAME or NAME@vN (under --out), or a dataset or version folder."),
    to: str = typer.Option(..., "--to", help="Target languages, comma-separated langdetect codes, e.g. zh,fr,de."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets (where NAME is looked up, and where --name publishes)."),
    name: Optional[str] = typer.Option(None, "--name", help="Publish as a version of this dataset under --out (default: a new version of the source dataset)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every translation request (default 42)."),
    base_url: Optional[str] = shared("base_url"), model: Optional[str] = shared("model"),
    translator_base_url: Optional[str] = shared("translator_base_url"),
    translator_model: Optional[str] = shared("translator_model"),
    max_concurrency: Optional[int] = shared("max_concurrency"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Cap every translation request's max_tokens (default: 64 + 3x the source text's tokens)."),
    prompts_dir: Optional[Path] = typer.Option(None, "--prompts", help="Folder with your own template (prompts/translate/translate.txt layout)."),
    cache: Optional[Path] = shared("cache"),
    max_cost: Optional[float] = shared("max_cost"),
    max_total_tokens: Optional[int] = shared("max_total_tokens"),
    rpm: Optional[float] = shared("rpm"),
    tpm: Optional[float] = shared("tpm"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (teacher:, translator:, translate:, prices:, budget:)."),
    refresh: bool = shared("refresh"),
    no_cache: bool = shared("no_cache"),
) -> None:
    """Translate a dataset version (instruction, input, output, or every conversation turn), with code,
    URLs, placeholders, numbers and Markdown markers protected, and publish a new version."""
    from datagen.cli.output import plain_progress_interval, prefect_defaults, run_with_progress
    from datagen.runspec import add_translation, base_run, load_config
    from datagen.store.refs import resolve_version
    from datagen.teacher.preflight import check_endpoint

    from datagen.errors import DatagenError
    from datagen.methods.translate import parse_languages

    if not parse_languages(to, "--to"):       # checked first: a bad code writes nothing anywhere
        raise DatagenError("--to: expected language codes such as zh,fr,de")
    flags = _common_flags(base_url, model, max_concurrency, rpm, tpm, refresh, no_cache)
    cfg = load_config(config)
    ref = resolve_version(dataset, out)
    if not (ref.dir / "records.jsonl").is_file():
        raise DatagenError(f"{dataset}: {ref.dir} has no records.jsonl")
    store_root = out if name else ref.store.root
    run, teacher_cfg = base_run(name=name or ref.name, out=store_root, cfg=cfg, config_path=config,
                                teacher_flags=flags, cache=cache or Path(out) / ".cache" / "responses.sqlite",
                                max_cost=max_cost, max_total_tokens=max_total_tokens,
                                allowed={"teacher", "translator", "translate", "prices", "budget"})
    add_translation(run, cfg=cfg, config_path=config, teacher_cfg=teacher_cfg, languages=to, flag="--to",
                    translator_flags={"base_url": translator_base_url, "model": translator_model},
                    flags={"seed": seed, "max_tokens": max_tokens,
                           "prompts_dir": str(prompts_dir.resolve()) if prompts_dir else None})
    run["input"] = str(ref.dir.resolve())
    run["source_version"] = ref.label
    plain_progress_interval()
    if not run.get("translator") and not run.get("translator_yaml"):
        check_endpoint(teacher_cfg)
    _check_translator(run, teacher_cfg)
    prefect_defaults()

    import asyncio

    from datagen.flows.console import quiet_user_errors
    from datagen.flows.translate import translate_flow
    quiet_user_errors()
    run_with_progress(lambda: asyncio.run(translate_flow(run)), target=0,
                      cache=None if teacher_cfg.cache_mode == "off" else run["cache"])
