"""`datagen export`: a published version as train/validation files for LLaMA-Factory, axolotl, TRL and
the Hugging Face Hub."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from datagen.cli.app import app
from datagen.cli.output import console


@app.command("export")
def export(
    dataset: str = typer.Argument(..., help="NAME or NAME@vN (under --out), or the path of a dataset or version folder."),
    dest: Path = typer.Option(..., "--dest", help="Folder to write the export into (created; must be empty unless --force)."),
    format: str = typer.Option("alpaca,sharegpt,messages,parquet", "--format",
                               help="alpaca, sharegpt, messages or parquet; several with commas. Each gets its own subfolder."),
    val: float = typer.Option(0.02, "--val", help="Share of records held out for validation, in [0, 1); 0 writes train only."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split. The split is keyed by record id: the same id, "
                                                "seed and --val put a record in the same split in every version."),
    license: str = typer.Option("other", "--license", help="Licence id for the dataset card's front matter (e.g. apache-2.0, cc-by-4.0)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --dest."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
) -> None:
    """Export a version: per-format train/validation files, dataset_info.json, axolotl.yaml, README.md card."""
    from datagen.errors import DatagenError
    from datagen.store.exporting import check_seed, check_val, export_version, parse_formats
    from datagen.store.refs import resolve_version

    formats = parse_formats(format)
    val = check_val(val)
    seed = check_seed(seed)
    if not license.strip() or any(c.isspace() for c in license):
        raise DatagenError(f"--license: '{license}' is not a licence id (one word, e.g. apache-2.0)")
    ref = resolve_version(dataset, out)
    summary = export_version(ref, dest, formats, val=val, seed=seed, force=force, license=license)
    counts = summary["counts"]
    console.print(escape(f"exported {ref.label}: {counts['train']:,} train, {counts['validation']:,} validation "
                         f"({', '.join(formats)}) -> {dest}"), highlight=False, soft_wrap=True)
    if val and not counts["validation"]:
        console.print(f"note: no record fell in validation at --val {val}; only train files were written",
                      highlight=False, markup=False)
