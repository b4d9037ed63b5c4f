"""Reading seed tasks in the formats people already have.

Accepted: the Self-Instruct seed format (JSONL, one task per line with `instances`), Alpaca records
(`instruction, input, output`) as a JSON array or JSONL, and plain text (one instruction per line).
Every problem is reported as one line naming file:line and the field, before anything is written.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from datagen import jsontext
from datagen.errors import DatagenError


@dataclass
class SeedTask:
    id: str
    instruction: str
    instances: list[dict[str, str]] = field(default_factory=list)
    is_classification: bool | None = None
    name: str = ""
    source: str = ""  # file:line it came from


MAX_LINE_BYTES = 1 << 20  # a seed task is a few hundred bytes; a 1 MB line is a wrong file, not a task


def _check_line_size(path: Path, n: int, raw: str) -> None:
    size = len(raw.encode("utf-8")) if len(raw) > MAX_LINE_BYTES // 4 else len(raw)
    if size > MAX_LINE_BYTES:
        raise _fail(path, n, f"line is {size / 1e6:.1f} MB; a seed task must be under {MAX_LINE_BYTES // (1 << 20)} MB")


def _fail(path: Path, line: int | None, msg: str) -> DatagenError:
    where = f"{path}:{line}" if line else f"{path}"
    return DatagenError(f"{where}: {msg}")


def _text_field(obj: dict, key: str, where: str, required: bool) -> str:
    if key not in obj:
        if required:
            raise DatagenError(f"{where}: field '{key}' is missing")
        return ""
    val = obj[key]
    if val is None and not required:
        return ""
    if not isinstance(val, str):
        raise DatagenError(f"{where}: field '{key}' must be a string, got {type(val).__name__}")
    return val


def _task_from_object(obj: object, where: str, index: int) -> SeedTask:
    if not isinstance(obj, dict):
        raise DatagenError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    instruction = _text_field(obj, "instruction", where, required=True).strip()
    if not instruction:
        raise DatagenError(f"{where}: field 'instruction' is empty")
    if "instances" in obj:
        raw = obj["instances"]
        if not isinstance(raw, list):
            raise DatagenError(f"{where}: field 'instances' must be a list, got {type(raw).__name__}")
        instances = []
        for k, inst in enumerate(raw):
            if not isinstance(inst, dict):
                raise DatagenError(f"{where}: field 'instances[{k}]' must be an object")
            instances.append({
                "input": _text_field(inst, "input", where, required=False),
                "output": _text_field(inst, "output", where, required=True),
            })
        clf = obj.get("is_classification")
        if clf is not None and not isinstance(clf, bool):
            raise DatagenError(f"{where}: field 'is_classification' must be true or false, got {clf!r}")
    else:  # Alpaca record
        instances = [{
            "input": _text_field(obj, "input", where, required=False),
            "output": _text_field(obj, "output", where, required=False),
        }]
        if not instances[0]["output"] and not instances[0]["input"]:
            instances = []
        clf = None
    task_id = obj.get("id", f"seed_{index}")
    if not isinstance(task_id, (str, int)):
        raise DatagenError(f"{where}: field 'id' must be a string")
    name = obj.get("name", "")
    return SeedTask(id=str(task_id), instruction=instruction, instances=instances,
                    is_classification=clf, name=name if isinstance(name, str) else "",
                    source=where)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatagenError(f"{path}: seed file not found") from None
    except IsADirectoryError:
        raise DatagenError(f"{path}: is a folder, expected a seed file") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM is harmless; editors on Windows add it
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _fail(path, line, f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def load_seeds(path: str | Path) -> list[SeedTask]:
    """Load seed tasks; raise DatagenError naming file:line and field on the first problem."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DatagenError(f"{path}: the seed file is empty")
    suffix = path.suffix.lower()
    tasks: list[SeedTask] = []
    if suffix == ".txt":
        for n, raw in enumerate(text.splitlines(), 1):
            _check_line_size(path, n, raw)
            if raw.strip():
                tasks.append(SeedTask(id=f"seed_{len(tasks)}", instruction=raw.strip(), source=f"{path}:{n}"))
    elif suffix == ".json" or (suffix not in (".jsonl", ".ndjson") and text.lstrip().startswith("[")):
        try:
            data = jsontext.loads(text, str(path))
        except json.JSONDecodeError as e:
            raise _fail(path, e.lineno, f"invalid JSON: {e.msg}") from None
        if not isinstance(data, list):
            raise _fail(path, 1, "expected a JSON array of records with 'instruction'")
        # json.loads keeps no positions, so a JSON array names the element instead of the line
        for i, obj in enumerate(data):
            tasks.append(_task_from_object(obj, f"{path}: record {i + 1}", i))
    elif suffix in (".jsonl", ".ndjson"):
        for n, raw in enumerate(text.splitlines(), 1):
            _check_line_size(path, n, raw)
            if not raw.strip():
                continue
            try:
                obj = jsontext.loads(raw, f"{path}:{n}")
            except json.JSONDecodeError as e:
                raise _fail(path, n, f"invalid JSON: {e.msg} (column {e.colno})") from None
            tasks.append(_task_from_object(obj, f"{path}:{n}", len(tasks)))
    else:
        raise DatagenError(
            f"{path}: unknown seed format '{suffix or '(no extension)'}'; use .jsonl (Self-Instruct or Alpaca), "
            ".json (Alpaca array) or .txt (one instruction per line)")
    if not tasks:
        raise DatagenError(f"{path}: no seed tasks found")
    seen: dict[str, str] = {}
    for t in tasks:
        if t.id in seen:
            raise DatagenError(f"{t.source}: field 'id' duplicates '{t.id}' first seen at {seen[t.id]}")
        seen[t.id] = t.source
    return tasks


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:  # in blocks: a source may be a multi-GB JSONL
        return hashlib.file_digest(f, "sha256").hexdigest()
