"""Naming a published version from the command line: `NAME`, `NAME@vN` (looked up in the store
folder given by `--out`, the flag every command uses for it), or the path of a dataset folder (its
LATEST) or of a version folder. Commands that read a dataset (export, report, show, diff, versions,
translate) all resolve it here, so they accept the same spellings and fail with the same one line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError
from datagen.store.sources import parse_dataset_spec
from datagen.store.versions import DatasetStore


@dataclass(frozen=True)
class VersionRef:
    store: DatasetStore
    version: str          # "v0003"
    dir: Path             # the version folder

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def label(self) -> str:
        return f"{self.store.name}@{self.version}"


def resolve_dataset(spec: str, out: Path) -> DatasetStore:
    """A dataset (not a version): `NAME` under OUT or a dataset folder holding LATEST."""
    path = Path(spec)
    if path.is_dir():
        if (path / "LATEST").is_file() or any(p.name.startswith("v") for p in path.iterdir() if p.is_dir()):
            return DatasetStore(path.parent, path.name)
        raise DatagenError(f"{spec}: folder is not a dataset (no LATEST and no vNNNN folders)")
    if path.exists():
        raise DatagenError(f"{spec}: is a file, expected a dataset name or folder")
    if "/" in spec:
        raise DatagenError(f"{spec}: no such dataset folder")
    name, version = parse_dataset_spec(spec)
    if version:
        raise DatagenError(f"{spec}: expected a dataset name without @version")
    store = DatasetStore(out, name)
    if not store.dir.is_dir():
        raise DatagenError(f"{spec}: no dataset '{name}' under {out} (set the store folder with --out)")
    return store


def resolve_version(spec: str, out: Path) -> VersionRef:
    """`NAME[@vN]` under OUT, a dataset folder (its LATEST) or a version folder."""
    path = Path(spec)
    if path.is_dir():
        if (path / "manifest.json").is_file() and path.parent.is_dir():
            store = DatasetStore(path.parent.parent, path.parent.name)
            return VersionRef(store, path.name, path)
        store = resolve_dataset(spec, out)
        vdir = store.resolve(None)
        return VersionRef(store, vdir.name, vdir)
    if path.exists():
        raise DatagenError(f"{spec}: is a file, expected NAME[@vN] or a dataset or version folder")
    if "/" in spec:
        raise DatagenError(f"{spec}: no such dataset or version folder")
    name, version = parse_dataset_spec(spec)
    store = DatasetStore(out, name)
    if not store.dir.is_dir():
        raise DatagenError(f"{spec}: no dataset '{name}' under {out} (set the store folder with --out)")
    vdir = store.resolve(version)
    return VersionRef(store, vdir.name, vdir)
