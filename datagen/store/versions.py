"""The versioned dataset store (DESIGN §4).

outputs/<name>/vNNNN/ is built in outputs/<name>/.runs/<run-id>/ and published with one atomic
rename while holding outputs/<name>/.lock, so two runs never get the same number, a reader never sees
half a version, and a published version is never touched again.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from datagen.errors import DatagenError
from datagen.records import Record
from datagen.store.export import EXPORTERS, dataset_info

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^v(\d{4,})$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise DatagenError(f"--name: '{name}' is not a valid dataset name (letters, digits, '.', '_', '-'; "
                           "no slashes or '..'; at most 100 characters)")
    return name


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DatasetStore:
    def __init__(self, root: str | Path, name: str):
        self.root = Path(root)
        self.name = check_name(name)
        self.dir = self.root / name

    def versions(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in self.dir.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
        return [name for _, name in sorted(found)]

    def latest(self) -> str | None:
        f = self.dir / "LATEST"
        return f.read_text().strip() if f.exists() else None

    def resolve(self, version: str | None) -> Path:
        v = version or self.latest()
        if not v:
            raise DatagenError(f"{self.dir}: no published version")
        if v.isdigit():
            v = f"v{int(v):04d}"
        path = self.dir / v
        if not path.is_dir():
            raise DatagenError(f"{self.dir}: no version '{v}' (have: {', '.join(self.versions()) or 'none'})")
        return path

    def work_dir(self, run_id: str) -> Path:
        d = self.dir / ".runs" / run_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, run_id: str, records: list[Record], rejected: list[dict[str, Any]],
                manifest: dict[str, Any], readme: str) -> Path:
        """Write every file into the run's staging folder, then rename it to the next version."""
        stage = self.work_dir(run_id) / "version"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir(parents=True)
        counts = {}
        for fname, export in EXPORTERS.items():
            counts[fname] = _write_jsonl(stage / fname, (export(r) for r in records))
        counts["records.jsonl"] = _write_jsonl(stage / "records.jsonl", (r.to_dict() for r in records))
        counts["rejected.jsonl"] = _write_jsonl(stage / "rejected.jsonl", rejected)
        (stage / "dataset_info.json").write_text(json.dumps(dataset_info(self.name), indent=2) + "\n")
        with self._lock():
            existing = self.versions()
            number = int(existing[-1][1:]) + 1 if existing else 1
            version = f"v{number:04d}"
            manifest = {**manifest, "dataset": self.name, "version": version, "files": counts}
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            (stage / "README.md").write_text(readme.replace("{{version}}", version))
            _fsync_dir(stage)
            final = self.dir / version
            os.rename(stage, final)  # atomic on one filesystem; fails loudly rather than merging
            tmp = self.dir / ".LATEST.tmp"
            tmp.write_text(version + "\n")
            os.replace(tmp, self.dir / "LATEST")
            _fsync_dir(self.dir)
        shutil.rmtree(self.work_dir(run_id), ignore_errors=True)
        return final
