"""`datagen why`: the answer to "why is this row not in my dataset?" read from a published version."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from datagen.errors import DatagenError


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _row_id(row: dict[str, Any]) -> str:
    return row.get("id") or (row.get("record") or {}).get("id", "")


def _find(path: Path, record_id: str) -> list[dict[str, Any]]:
    return [r for r in _rows(path) if _row_id(r).startswith(record_id)]


def explain(version_dir: Path, record_id: str) -> dict[str, Any]:
    """Kept or dropped; if dropped, the stage, reason, detail and the record it collided with."""
    if len(record_id) < 4:
        raise DatagenError(f"record id '{record_id}': give at least 4 characters")
    kept = _find(version_dir / "records.jsonl", record_id)
    dropped = _find(version_dir / "rejected.jsonl", record_id)
    matches = {_row_id(r) for r in kept + dropped}
    if not matches:
        raise DatagenError(f"{version_dir}: no record with id starting '{record_id}' (kept or rejected)")
    if len(matches) > 1:
        raise DatagenError(f"record id '{record_id}' is ambiguous: {', '.join(sorted(matches)[:5])}")
    if kept:
        return {"status": "kept", "record": kept[0]}
    row = dropped[0]
    answer = {"status": "rejected", "stage": row["stage"], "reason": row["reason"], "detail": row.get("detail", {}),
              "text": row.get("text", "")}
    other = row.get("detail", {}).get("duplicate_of")
    if other:
        hit = _find(version_dir / "records.jsonl", other) or _find(version_dir / "rejected.jsonl", other)
        if hit:
            answer["collided_with"] = hit[0].get("record", hit[0])
    return answer
