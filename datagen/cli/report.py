"""`datagen report`: charts of a dataset version, or of two versions side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from datagen.cli.app import app
from datagen.cli.output import console


@app.command("report")
def report(
    dataset: str = typer.Argument(..., help="NAME, NAME@vN (looked up under --out), or a dataset or version folder."),
    other: Optional[str] = typer.Argument(None, help="A second version to compare with (same spellings), e.g. NAME@v1 NAME@v2."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Folder to write report.html and the PNGs into "
                                        "[default: ./reports/NAME-vNNNN/, or ./reports/NAME-vNNNN-vs-NAME2-vMMMM/]. "
                                        "An existing folder is replaced only if it holds an earlier report."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    sample: int = typer.Option(5000, "--sample", min=1, help="At most this many records (the same ones every time, "
                                                          "chosen by id) are parsed for the verb/object figure and "
                                                          "language-detected when they have no `lang`."),
) -> None:
    """Write one self-contained HTML page (opens offline) and a PNG per chart: rejection funnel, token
    lengths, language mix, root verbs and their objects, judge scores, ROUGE-L similarity, evolution."""
    from datagen import report as rep
    from datagen.store.refs import resolve_version
    from datagen.store.versions import check_writable_dir

    refs = [resolve_version(spec, out) for spec in (dataset, other) if spec is not None]
    target = dest if dest is not None else rep.default_dest([r.label for r in refs])
    check_writable_dir(target, "--dest")
    rep.check_dest(target)
    versions = [rep.load_version(r.label, r.dir, sample=sample) for r in refs]
    files = rep.build(versions)
    written = rep.write(files, target)
    pngs = sorted(n for n in files if n.endswith(".png"))
    console.print(escape(f"wrote {written / rep.REPORT_FILE} and {len(pngs)} PNGs ({', '.join(pngs)})"),
                  highlight=False, soft_wrap=True)
