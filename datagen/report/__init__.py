"""`datagen report`: a dataset version (or two, compared) as one self-contained HTML page plus a PNG
per chart. data.py reads a version folder, charts.py draws, html.py assembles; write() puts the files
in place all at once (built in a hidden sibling folder, then renamed) so a failure leaves nothing."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from datagen.errors import DatagenError
from datagen.report.charts import render
from datagen.report.data import VersionData, load_version
from datagen.report.html import page

REPORT_FILE = "report.html"

__all__ = ["REPORT_FILE", "VersionData", "build", "check_dest", "default_dest", "load_version", "write"]


def default_dest(labels: list[str]) -> Path:
    """./reports/NAME-vNNNN/, or ./reports/NAME-vNNNN-vs-NAME2-vMMMM/ for a comparison."""
    return Path("reports") / "-vs-".join(label.replace("@", "-") for label in labels)


def build(versions: list[VersionData]) -> dict[str, bytes]:
    """File name -> content: report.html and one PNG per chart that has data."""
    charts = render(versions)
    files = {REPORT_FILE: page(versions, charts).encode("utf-8")}
    for c in charts:
        if c.png:
            files[f"{c.key}.png"] = c.png
    return files


def check_dest(dest: Path) -> None:
    """An existing dest is replaced only if it is empty or an earlier report (it holds report.html)."""
    if dest.exists():
        if not dest.is_dir():
            raise DatagenError(f"--dest: '{dest}' is a file, not a folder")
        if any(dest.iterdir()) and not (dest / REPORT_FILE).is_file():
            raise DatagenError(f"--dest: '{dest}' is not empty and holds no {REPORT_FILE}; choose another folder")


def write(files: dict[str, bytes], dest: Path) -> Path:
    """Write `files` as the folder `dest` (see check_dest), refused before a byte is written."""
    dest = Path(dest)
    check_dest(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, content in files.items():
            (stage / name).write_bytes(content)
        os.chmod(stage, 0o755)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            os.rename(dest, old / "report")
            os.rename(stage, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dest
