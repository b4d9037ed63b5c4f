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

from datagen.crashpoints import crash_point
from datagen.errors import DatagenError
from datagen.records import Record
from datagen.store.export import EXPORTERS, dataset_info, optional_columns

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^v(\d{4,})$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise DatagenError(f"--name: '{name}' is not a valid dataset name (ASCII letters A-Z a-z, digits 0-9, "
                           "'.', '_', '-'; starting with a letter or digit; no slashes or '..'; at most 100 characters)")
    return name


def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Fail before anything starts (Prefect, a teacher) if `path` cannot hold datasets: a file, a
    folder under a file, a read-only place, or a kernel filesystem such as /proc."""
    import tempfile

    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise DatagenError(f"{flag}: '{path}' is a file, not a folder")
    anc = p
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise DatagenError(f"{flag}: '{path}' is under '{anc}', which is a file")
    if any(str(p).startswith(kernel) for kernel in ("/proc/", "/sys/", "/dev/")) or str(p) in ("/proc", "/sys", "/dev"):
        raise DatagenError(f"{flag}: '{path}' is on a kernel filesystem; choose a folder on disk")
    try:
        fd, probe = tempfile.mkstemp(prefix=".datagen-write-check-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DatagenError(f"{flag}: cannot write under '{anc}' ({e.strerror or e})") from None
    return p


class StaleLatest(DatagenError):
    """LATEST moved on while a run that continues an earlier version was working."""

    def __init__(self, name: str, expected: str, latest: str | None):
        self.expected, self.latest = expected, latest
        super().__init__(f"{name}: {name}@{latest} was published while this run extended {name}@{expected}; "
                         f"nothing was published; run again to extend {name}@{latest}")


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
        digits = v[1:] if v[:1] in ("v", "V") else v
        if digits.isdigit():  # 3, v3 and v0003 all mean the same version
            v = f"v{int(digits):04d}"
        path = self.dir / v
        if not path.is_dir():
            raise DatagenError(f"{self.dir}: no version '{v}' (have: {', '.join(self.versions()) or 'none'})")
        return path

    def work_dir(self, run_id: str) -> Path:
        d = self.dir / ".runs" / run_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def discard_run(self, run_id: str, unless_named_in: str = "") -> None:
        """Remove a failed or interrupted run's working folder, unless `unless_named_in` (the error the
        user reads) points at a file inside it, such as the teacher's log."""
        d = self.dir / ".runs" / run_id
        if d.is_dir() and str(d) not in unless_named_in:
            shutil.rmtree(d, ignore_errors=True)
            try:
                d.parent.rmdir()          # only succeeds when no other run is working here
            except OSError:
                pass

    def claim_run(self, run_id: str) -> "RunClaim":
        """Hold the run's lock for its lifetime, so `recover()` by another run never deletes live work."""
        return RunClaim(self.work_dir(run_id))

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def open_version(self, run_id: str) -> "VersionWriter":
        """A staging folder that records stream into; `publish()` makes it the next version."""
        return VersionWriter(self, run_id)

    def publish(self, run_id: str, records: Iterable[Record], rejected: Iterable[dict[str, Any]],
                manifest: dict[str, Any], readme: str, ancestors: Iterable[Record] = (),
                if_latest: str | None = None) -> Path:
        """`if_latest`: publish only if LATEST still names that version (checked under the lock), for a
        run that continues it and would otherwise leave out a version published meanwhile."""
        with self.open_version(run_id) as w:
            for r in records:
                w.add(r)
            for row in rejected:
                w.reject(row)
            for r in ancestors:
                w.add_ancestor(r)
            return w.publish(manifest, readme, if_latest=if_latest)

    def _publish_staged(self, run_id: str, stage: Path, manifest: dict[str, Any], readme: str,
                        if_latest: str | None = None) -> Path:
        crash_point("publish.staged")
        with self._lock():
            if if_latest is not None and (latest := self.latest()) != if_latest:
                raise StaleLatest(self.name, if_latest, latest)
            existing = self.versions()
            number = int(existing[-1][1:]) + 1 if existing else 1
            version = f"v{number:04d}"
            manifest = {**manifest, "dataset": self.name, "version": version}
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            (stage / "README.md").write_text(readme.replace("{{version}}", version))
            _fsync_dir(stage)
            final = self.dir / version
            os.rename(stage, final)  # atomic on one filesystem; fails loudly rather than merging
            crash_point("publish.renamed")
            self._write_latest(version)
            crash_point("publish.latest")
        shutil.rmtree(self.work_dir(run_id), ignore_errors=True)
        return final

    def _write_latest(self, version: str) -> None:
        tmp = self.dir / ".LATEST.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.dir / "LATEST")
        _fsync_dir(self.dir)

    def recover(self) -> list[str]:
        """After a crash: point LATEST at the newest complete version and delete the working state
        of runs that are no longer alive (their lock is free). Returns the run ids cleaned."""
        cleaned = []
        with self._lock():
            versions = self.versions()
            if versions and self.latest() != versions[-1]:
                self._write_latest(versions[-1])   # a crash between rename and LATEST
            runs = self.dir / ".runs"
            if runs.is_dir():
                for d in runs.iterdir():
                    if d.is_dir() and not _run_alive(d):
                        shutil.rmtree(d, ignore_errors=True)
                        cleaned.append(d.name)
        return cleaned


class RunClaim:
    def __init__(self, work: Path):
        self._fh = open(work / ".alive", "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()

    def __enter__(self) -> "RunClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _run_alive(work: Path) -> bool:
    marker = work / ".alive"
    if not marker.exists():
        return False
    with open(marker, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class VersionWriter:
    """Streams records into every export file at once, so a million records never sit in memory."""

    def __init__(self, store: DatasetStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.stage = store.work_dir(run_id) / "version"
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.stage.mkdir(parents=True)
        names = [*EXPORTERS, "records.jsonl", "rejected.jsonl"]
        self._files = {n: open(self.stage / n, "w", encoding="utf-8") for n in names}
        self.counts = {n: 0 for n in names}
        self.columns: dict[str, set[str]] = {n: set() for n in EXPORTERS}   # optional columns seen, per file
        self.published: Path | None = None

    def _write(self, name: str, row: dict[str, Any]) -> None:
        f = self._files[name]
        f.write(json.dumps(row, ensure_ascii=False))
        f.write("\n")
        self.counts[name] += 1

    def add(self, record: Record) -> None:
        for name, export in EXPORTERS.items():
            row = export(record)
            self.columns[name] |= optional_columns(row)
            self._write(name, row)
        self._write("records.jsonl", record.to_dict())

    def reject(self, row: dict[str, Any]) -> None:
        self._write("rejected.jsonl", row)

    def add_ancestor(self, record: Record) -> None:
        """A record the published ones descend from but which is not published itself (a pipeline's
        intermediate stage, an evolved record's input): lineage.jsonl, so every parent id resolves."""
        if "lineage.jsonl" not in self._files:
            self._files["lineage.jsonl"] = open(self.stage / "lineage.jsonl", "w", encoding="utf-8")
            self.counts["lineage.jsonl"] = 0
        self._write("lineage.jsonl", record.to_dict())

    def _close_files(self) -> None:
        for f in self._files.values():
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())
                f.close()

    def publish(self, manifest: dict[str, Any], readme: str, if_latest: str | None = None) -> Path:
        self._close_files()
        (self.stage / "dataset_info.json").write_text(json.dumps(dataset_info(self.store.name, self.columns), indent=2) + "\n")
        manifest = {**manifest, "files": dict(self.counts)}
        self.published = self.store._publish_staged(self.run_id, self.stage, manifest, readme, if_latest)
        return self.published

    def __enter__(self) -> "VersionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._close_files()
        if self.published is None:  # an error before publishing: leave nothing half-made behind
            shutil.rmtree(self.store.work_dir(self.run_id), ignore_errors=True)
