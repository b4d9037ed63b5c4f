"""`datagen why`: the answer to "why is this row not in my dataset?" read from published versions.

A record is usually asked about after later runs have moved LATEST on (a filter child of the version
that dropped it), so without a version the search walks the lineage: LATEST, its manifest's `parent`,
that one's parent, ..., then the dataset's other versions, newest first. The first version that holds
the id, kept or rejected, is where it was decided.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from datagen.errors import DatagenError
from datagen.store.sources import parse_dataset_spec
from datagen.store.versions import DatasetStore


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatagenError(f"{path}:{n}: invalid JSON: {e.msg} (column {e.colno})") from None


def _row_id(row: dict[str, Any]) -> str:
    return str(row.get("id") or (row.get("record") or {}).get("id", ""))


def _split(record_id: str) -> tuple[str, str]:
    """'3f9a…-2' -> ('3f9a…', '2'): the occurrence suffix UniqueIds gives later copies of a row."""
    base, dash, n = record_id.rpartition("-")
    return (base, n) if dash and base and n.isdigit() else (record_id, "")


def matches(row_id: str, query: str) -> bool:
    """A prefix of the id, or a prefix of its hash plus the full suffix ('3f9a2c1e-2')."""
    if row_id.startswith(query):
        return True
    q_base, q_n = _split(query)
    r_base, r_n = _split(row_id)
    return bool(q_n) and q_n == r_n and r_base.startswith(q_base)


def _find(path: Path, query: str, exact: bool = False) -> list[dict[str, Any]]:
    return [r for r in _rows(path) if (_row_id(r) == query if exact else matches(_row_id(r), query))]


def _lookup(version_dir: Path, record_id: str) -> dict[str, Any] | None:
    kept = _find(version_dir / "records.jsonl", record_id)
    dropped = _find(version_dir / "rejected.jsonl", record_id)
    ids = {_row_id(r) for r in kept + dropped}
    if not ids:
        return None
    if record_id in ids:   # the full id of a first occurrence is not ambiguous with its '-2' copy
        kept = [r for r in kept if _row_id(r) == record_id]
        dropped = [r for r in dropped if _row_id(r) == record_id]
    elif len(ids) > 1:
        raise DatagenError(f"record id '{record_id}' is ambiguous in {version_dir}: {', '.join(sorted(ids)[:5])} "
                           "(give more characters, or the full id with its -N suffix)")
    if kept:
        return {"status": "kept", "record": kept[0]}
    row = dropped[0]
    answer = {"status": "rejected", "id": _row_id(row), "stage": row["stage"], "reason": row["reason"],
              "detail": row.get("detail", {}), "text": row.get("text", "")}
    other = row.get("detail", {}).get("duplicate_of")
    if other:
        hit = (_find(version_dir / "records.jsonl", other, exact=True)
               or _find(version_dir / "rejected.jsonl", other, exact=True))
        if hit:
            answer["collided_with"] = hit[0].get("record", hit[0])
    return answer


def _check_query(record_id: str) -> None:
    if len(record_id) < 4:
        raise DatagenError(f"record id '{record_id}': give at least 4 characters")


def explain(version_dir: Path, record_id: str) -> dict[str, Any]:
    """Kept or dropped in this one version; if dropped, the stage, reason, detail and the record it
    collided with."""
    _check_query(record_id)
    answer = _lookup(version_dir, record_id)
    if answer is None:
        raise DatagenError(f"{version_dir}: no record with id starting '{record_id}' (kept or rejected)")
    return {**answer, "version_dir": version_dir}


def _parent(version_dir: Path) -> str | None:
    try:
        parent = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8")).get("parent")
    except (OSError, ValueError, AttributeError):
        return None
    return parent if isinstance(parent, str) and "@" in parent else None


def lineage(out: Path, name: str) -> Iterator[tuple[str, Path]]:
    """(`name@vN`, folder) of LATEST, its ancestors, then the dataset's other versions, newest first."""
    store = DatasetStore(out, name)
    seen: set[Path] = set()
    versions = store.versions()
    node: Path | None = store.resolve(None if store.latest() or not versions else versions[-1])
    label = f"{name}@{node.name}"
    while node is not None and node not in seen:
        seen.add(node)
        yield label, node
        parent = _parent(node)
        node = None
        if parent:
            try:
                p_name, p_version = parse_dataset_spec(parent)
            except DatagenError:   # not a name@version this store could hold: the walk ends here
                continue
            candidate = out / p_name / (p_version or "")
            if p_version and (candidate / "manifest.json").is_file():
                node, label = candidate, parent
    for version in reversed(versions):
        if store.dir / version not in seen:
            seen.add(store.dir / version)
            yield f"{name}@{version}", store.dir / version


def explain_spec(out: Path, spec: str, record_id: str) -> dict[str, Any]:
    """`NAME@vN`: that version only; `NAME`: the first version of its lineage that decided the record."""
    name, version = parse_dataset_spec(spec)
    store = DatasetStore(out, name)
    if not store.dir.is_dir():
        raise DatagenError(f"{spec}: no dataset '{name}' under {out}")
    if version:
        vdir = store.resolve(version)
        return {**explain(vdir, record_id), "version": f"{name}@{vdir.name}", "searched": []}
    return explain_latest(out, name, record_id)


def explain_latest(out: Path, name: str, record_id: str) -> dict[str, Any]:
    """`explain` over the lineage: the answer of the first version that decided the record."""
    _check_query(record_id)
    searched = []
    for label, vdir in lineage(out, name):
        answer = _lookup(vdir, record_id)
        if answer is not None:
            return {**answer, "version": label, "version_dir": vdir, "searched": searched}
        searched.append(label)
    raise DatagenError(f"{out / name}: no record with id starting '{record_id}' (kept or rejected) in "
                       f"{', '.join(searched)}")
