"""Reading records to curate: a published version, a dataset's latest version, or a plain file.

Streams line by line so dedup and filtering of a million-record file never holds it all in memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from datagen.errors import DatagenError
from datagen.records import Record
from datagen.store.versions import DatasetStore


@dataclass
class Source:
    path: Path                 # the file records are read from
    dataset: str | None = None  # set when the source is a published version
    version: str | None = None
    out: Path | None = None    # the outputs folder holding that dataset

    @property
    def parent(self) -> str | None:
        return f"{self.dataset}@{self.version}" if self.dataset else None


def resolve_source(spec: str, out: Path) -> Source:
    """`name[@vN]` under OUT, a dataset or version folder, or a .jsonl/.json/.txt file."""
    path = Path(spec)
    if path.is_file():
        return Source(path=path)
    if path.is_dir():
        if (path / "records.jsonl").is_file():
            return Source(path=path / "records.jsonl", dataset=path.parent.name, version=path.name, out=path.parent.parent)
        if (path / "LATEST").is_file():
            store = DatasetStore(path.parent, path.name)
            v = store.resolve(None)
            return Source(path=v / "records.jsonl", dataset=store.name, version=v.name, out=path.parent)
        raise DatagenError(f"{spec}: folder is neither a dataset (with LATEST) nor a version (with records.jsonl)")
    name, _, version = spec.partition("@")
    store = DatasetStore(out, name)
    if not store.dir.is_dir():
        raise DatagenError(f"{spec}: no such file, and no dataset '{name}' under {out}")
    v = store.resolve(version or None)
    return Source(path=v / "records.jsonl", dataset=store.name, version=v.name, out=out)


def _record_from_row(row: object, where: str) -> Record:
    if not isinstance(row, dict):
        raise DatagenError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row or "conversations" in row:
        turns = row.get("messages") or row.get("conversations")
        if not isinstance(turns, list):
            raise DatagenError(f"{where}: field 'messages' must be a list")
        roles = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
        conv = []
        for t in turns:
            role = roles.get(t.get("role") or t.get("from") or "") if isinstance(t, dict) else None
            content = (t.get("content") if "content" in t else t.get("value")) if isinstance(t, dict) else None
            if role is None or not isinstance(content, str):
                raise DatagenError(f"{where}: each turn needs role/from and content/value strings")
            conv.append({"role": role, "content": content})
        system = next((t["content"] for t in conv if t["role"] == "system"), "")
        conv = [t for t in conv if t["role"] != "system"]
        first = next((t["content"] for t in conv if t["role"] == "user"), "")
        last = next((t["content"] for t in reversed(conv) if t["role"] == "assistant"), "")
        return Record(instruction=first, output=last, conversation=conv, system=system, method="seed")
    for key in ("instruction", "input", "output"):
        if key in row and not isinstance(row[key], str):
            raise DatagenError(f"{where}: field '{key}' must be a string, got {type(row[key]).__name__}")
    if "instruction" not in row:
        raise DatagenError(f"{where}: field 'instruction' is missing")
    if "method" in row and "scores" in row:  # datagen's own records.jsonl
        return Record.from_dict(row)
    return Record(instruction=row["instruction"], input=row.get("input", ""), output=row.get("output", ""),
                  system=row.get("system", "") or "", method="seed")


def iter_records(source: Source) -> Iterator[Record]:
    path = source.path
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        if suffix == ".json":
            try:
                data = json.loads(f.read().decode("utf-8-sig"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DatagenError(f"{path}: invalid JSON: {e}") from None
            if not isinstance(data, list):
                raise DatagenError(f"{path}: expected a JSON array of records")
            for i, row in enumerate(data, 1):
                yield _record_from_row(row, f"{path}: record {i}")
            return
        if suffix not in (".jsonl", ".ndjson", ".txt"):
            raise DatagenError(f"{path}: unknown format '{suffix}'; use .jsonl, .json or .txt")
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                raise DatagenError(f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x})") from None
            if not line:
                continue
            if suffix == ".txt":
                yield Record(instruction=line, method="seed")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatagenError(f"{path}:{n}: invalid JSON: {e.msg} (column {e.colno})") from None
            yield _record_from_row(row, f"{path}:{n}")
