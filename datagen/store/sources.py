"""Reading records to curate: a published version, a dataset's latest version, or a plain file.

Streams line by line so dedup and filtering of a million-record file never holds it all in memory.
Files people already have mix shapes (an Alpaca export with a few chat rows, a `{"text"}` corpus),
so each row is read by its own shape; a row of none of them stops the run at its file:line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from datagen import jsontext
from datagen.errors import DatagenError
from datagen.records import Record, UniqueIds
from datagen.store.versions import DatasetStore, check_name

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".txt")
SHAPES = ("instruction with optional input/output (Alpaca), conversations (ShareGPT), messages (OpenAI), "
          "prompt with optional completion, text")
_VERSION = re.compile(r"^[vV]?\d{1,9}$")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "model": "assistant",
          "system": "system"}


@dataclass
class Source:
    path: Path                 # the file records are read from
    dataset: str | None = None  # set when the source is a published version
    version: str | None = None
    out: Path | None = None    # the outputs folder holding that dataset

    @property
    def parent(self) -> str | None:
        return f"{self.dataset}@{self.version}" if self.dataset else None


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """`name` or `name@v3` -> (name, version or None); a bad name or version says which part is wrong."""
    name, at, version = spec.partition("@")
    try:
        check_name(name)
    except DatagenError:
        raise DatagenError(f"{spec}: '{name}' is not a dataset name (letters, digits, '.', '_', '-')") from None
    if at and not _VERSION.match(version):
        raise DatagenError(f"{spec}: version '{version}' is not a version number (e.g. {name}@v3)")
    return name, version or None


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
            return _version_source(store, v, path.parent)
        raise DatagenError(f"{spec}: folder is neither a dataset (with LATEST) nor a version (with records.jsonl)")
    if path.exists():
        raise DatagenError(f"{spec}: not a regular file or folder")
    if "/" in spec or path.suffix.lower() in FILE_SUFFIXES:
        raise DatagenError(f"{spec}: file not found")
    name, version = parse_dataset_spec(spec)
    store = DatasetStore(out, name)
    if not store.dir.is_dir():
        raise DatagenError(f"{spec}: no such file, and no dataset '{name}' under {out}")
    return _version_source(store, store.resolve(version), out)


def _version_source(store: DatasetStore, vdir: Path, out: Path) -> Source:
    if not (vdir / "records.jsonl").is_file():
        raise DatagenError(f"{vdir}: version has no records.jsonl")
    return Source(path=vdir / "records.jsonl", dataset=store.name, version=vdir.name, out=out)


def _text(row: dict, key: str, where: str, required: bool = False) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DatagenError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def _turns(turns: Any, key: str, where: str) -> list[dict[str, str]]:
    if not isinstance(turns, list):
        raise DatagenError(f"{where}: field '{key}' must be a list of turns, got {type(turns).__name__}")
    conv = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise DatagenError(f"{where}: {key}[{i}] must be an object with role/from and content/value")
        raw_role = t.get("role", t.get("from"))
        content = t.get("content", t.get("value"))
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise DatagenError(f"{where}: {key}[{i}]: unknown role {raw_role!r}; use one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise DatagenError(f"{where}: {key}[{i}]: content/value must be a string, got {type(content).__name__}")
        conv.append({"role": role, "content": content})
    return conv


def _conversation_record(conv: list[dict[str, str]], system: str) -> Record:
    system = system or next((t["content"] for t in conv if t["role"] == "system"), "")
    conv = [t for t in conv if t["role"] != "system"]
    first = next((t["content"] for t in conv if t["role"] == "user"), "")
    last = next((t["content"] for t in reversed(conv) if t["role"] == "assistant"), "")
    return Record(instruction=first, output=last, conversation=conv, system=system, method="seed")


def _alpaca_record(row: dict, where: str) -> Record:
    instruction, input_ = _text(row, "instruction", where, required=True), _text(row, "input", where)
    output, system = _text(row, "output", where), _text(row, "system", where)
    history = row.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in history):
        raise DatagenError(f"{where}: field 'history' must be a list of [user, assistant] string pairs")
    if not history:
        return Record(instruction=instruction, input=input_, output=output, system=system, method="seed")
    last_user = f"{instruction}\n\n{input_}" if input_ else instruction
    conv = [{"role": role, "content": text} for pair in history for role, text in zip(("user", "assistant"), pair)]
    conv += [{"role": "user", "content": last_user}, {"role": "assistant", "content": output}]
    return _conversation_record(conv, system)


def _prompt_record(row: dict, where: str) -> Record:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list):   # TRL's conversational prompt/completion
        conv = _turns(prompt, "prompt", where) + (_turns(completion, "completion", where) if completion else [])
        return _conversation_record(conv, _text(row, "system", where))
    return Record(instruction=_text(row, "prompt", where, required=True), output=_text(row, "completion", where),
                  system=_text(row, "system", where), method="seed")


def record_from_row(row: object, where: str) -> Record:
    """One row of any known shape as a Record; `where` is the file:line named in errors."""
    if not isinstance(row, dict):
        raise DatagenError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "instruction" in row and "method" in row and "scores" in row:  # datagen's own records.jsonl
        _text(row, "instruction", where, required=True)
        try:
            return Record.from_dict(row)
        except TypeError as e:
            raise DatagenError(f"{where}: not a datagen record: {e}") from None
    for key in ("messages", "conversations"):
        if key in row:
            return _conversation_record(_turns(row[key], key, where), _text(row, "system", where))
    if "instruction" in row:
        return _alpaca_record(row, where)
    if "prompt" in row:
        return _prompt_record(row, where)
    if "text" in row:
        return Record(instruction=_text(row, "text", where, required=True), method="seed")
    found = ", ".join(sorted(map(str, row))) or "none"
    raise DatagenError(f"{where}: unknown record shape (fields: {found}); expected one of: {SHAPES}")


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DatagenError(f"{path}: unknown format '{suffix}'; use .jsonl, .json or .txt")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatagenError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        if suffix == ".json":
            try:
                text = f.read().decode("utf-8-sig")
                data = jsontext.loads(text, str(path))
            except UnicodeDecodeError as e:
                raise DatagenError(f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
            except json.JSONDecodeError as e:
                raise DatagenError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(data, list):
                raise DatagenError(f"{path}: expected a JSON array of records, got a {type(data).__name__}")
            for i, row in enumerate(data, 1):
                yield f"{path}: record {i}", row
            return
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                raise DatagenError(f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x})") from None
            if not line:
                continue
            if suffix == ".txt":
                yield f"{path}:{n}", {"text": line}
                continue
            try:
                yield f"{path}:{n}", jsontext.loads(line, f"{path}:{n}")
            except json.JSONDecodeError as e:
                raise DatagenError(f"{path}:{n}: invalid JSON: {e.msg} (column {e.colno})") from None


def iter_records(source: Source) -> Iterator[Record]:
    """Every record of the source, each with an id of its own (see UniqueIds); an empty source is an error."""
    ids = UniqueIds()
    count = 0
    for where, row in _rows(source.path):
        count += 1
        yield ids.assign(record_from_row(row, where))
    if not count:
        what = f"{source.parent} kept no records" if source.dataset else "the file holds no records"
        raise DatagenError(f"{source.path}: nothing to curate: {what}")


def check_source(source: Source) -> None:
    """Read the first record now, so an empty or unreadable source fails before a flow starts."""
    records = iter_records(source)
    try:
        next(records)
    finally:
        records.close()


def load_instructions(spec: str, out: Path, flag: str = "--input") -> tuple[list[Record], Source]:
    """The instructions a recipe starts from: a dataset (`name[@vN]`), a dataset or version folder, a
    Self-Instruct seed file, Alpaca JSON/JSONL, any other known row shape, or plain text (one
    instruction per line). A seed task's first instance gives the input. Rows without an
    instruction are skipped; a source with none at all is an error naming it."""
    source = resolve_source(spec, out)
    records: list[Record] = []
    ids = UniqueIds()
    rows = 0
    for where, row in _rows(source.path):
        rows += 1
        record = record_from_row(row, where)
        if isinstance(row, dict) and not record.input and isinstance(row.get("instances"), list) and row["instances"]:
            first = row["instances"][0]
            if isinstance(first, dict) and isinstance(first.get("input"), str):
                record = Record(instruction=record.instruction, input=first["input"],
                                output=first.get("output", "") if isinstance(first.get("output"), str) else "",
                                method=record.method, lang=record.lang)
        if record.instruction.strip():
            records.append(ids.assign(record))
    if not records:
        what = f"{source.parent} holds" if source.dataset else f"{rows} row{'s' if rows != 1 else ''},"
        raise DatagenError(f"{flag}: {source.path}: no instructions to start from ({what} none with an instruction)")
    return records, source
