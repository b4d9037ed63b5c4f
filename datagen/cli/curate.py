"""`datagen dedup` and `datagen filter`: a filter chain over a version or a file, published as a new version."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from datagen.cli.app import Tokenizer, app
from datagen.cli.output import plain_progress_interval, prefect_defaults, run_with_progress
from datagen.errors import DatagenError


def _curate(recipe: str, source: str, chain: list, chain_base: Optional[Path], chain_where: str,
            name: Optional[str], out: Path) -> None:
    from datagen.methods.curate import build_chain
    from datagen.runspec import new_run_id
    from datagen.store.sources import check_source, resolve_source
    from datagen.store.versions import check_name

    from datagen.store.versions import check_writable_dir

    check_writable_dir(out, "--out")
    plain_progress_interval()
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
    prefect_defaults()
    from datagen.flows.console import quiet_user_errors
    from datagen.flows.curate import curate_flow
    quiet_user_errors()

    run_with_progress(lambda: curate_flow(run))


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
