"""`datagen export`: one published version as training files a trainer accepts as they are.

DEST/<format>/{train,validation}.<jsonl|parquet>, plus dataset_info.json (LLaMA-Factory), axolotl.yaml
(an axolotl `datasets:` block) and README.md (a Hugging Face dataset card whose `configs` name every
file), and export.json (what was exported, from which version, with which split).

The split is a pure function of (seed, record id): a record keeps its split in every later version
that still holds it, so a validation set never leaks into training when a dataset grows.

Two passes over records.jsonl: the first checks every record (LLaMA-Factory's turn rules) and learns
which optional columns exist, so nothing is written for a version that cannot be exported and every
row of a file has the same columns (JSON loaders infer a schema from the first rows). The files are
built in a hidden folder next to DEST and renamed into place, so a failure leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from datagen.errors import DatagenError
from datagen.records import Record
from datagen.store.export import (check_turns, llamafactory_entry, optional_columns, to_alpaca, to_messages,
                                  to_sharegpt)
from datagen.store.refs import VersionRef

FORMATS = ("alpaca", "sharegpt", "messages", "parquet")
SPLITS = ("train", "validation")
DEFAULT_VAL = 0.02
# Which row shape each format writes, and the LLaMA-Factory shape that reads it.
_SHAPE = {"alpaca": "alpaca", "sharegpt": "sharegpt", "messages": "messages", "parquet": "messages"}
_OPTIONAL_DEFAULT = {"system": "", "history": []}


def parse_formats(value: str) -> list[str]:
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        raise DatagenError(f"--format: empty (choose from {', '.join(FORMATS)}; several with commas)")
    for n in names:
        if n not in FORMATS:
            raise DatagenError(f"--format: unknown format '{n}' (known: {', '.join(FORMATS)}; several with commas)")
    return list(dict.fromkeys(names))


def check_val(val: float) -> float:
    if not (isinstance(val, (int, float)) and math.isfinite(val) and 0 <= val < 1):
        raise DatagenError(f"--val: {val} is not a fraction in [0, 1) (the share of records held out for "
                           "validation, e.g. 0.02)")
    return float(val)


def check_seed(seed: int) -> int:
    if seed < 0 or seed >= 2**63:
        raise DatagenError(f"--seed: {seed} is out of range (0 to 2^63-1)")
    return seed


def split_of(record_id: str, seed: int, val: float) -> str:
    """'validation' for about `val` of all ids, 'train' for the rest; the same id, seed and val
    always give the same answer, whatever else the version holds."""
    digest = hashlib.sha256(f"datagen-split\0{seed}\0{record_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") < val * 2**64 else "train"


def read_records(vdir: Path) -> Iterator[tuple[int, Record]]:
    path = vdir / "records.jsonl"
    if not path.is_file():
        raise DatagenError(f"{path}: missing (every published version has records.jsonl)")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, Record.from_dict(json.loads(line))
            except (ValueError, TypeError, AttributeError) as e:
                raise DatagenError(f"{path}:{n}: not a record ({e})") from None


def read_manifest(vdir: Path) -> dict[str, Any]:
    path = vdir / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatagenError(f"{path}: missing") from None
    except ValueError as e:
        raise DatagenError(f"{path}: not JSON ({e})") from None


@dataclass
class Survey:
    """What the first pass learns about a version."""
    records: int = 0
    splits: Counter = field(default_factory=Counter)
    columns: dict[str, set[str]] = field(default_factory=lambda: {"alpaca": set(), "sharegpt": set()})
    methods: Counter = field(default_factory=Counter)
    langs: Counter = field(default_factory=Counter)
    multi_turn: int = 0
    no_lang: list[str] = field(default_factory=list)    # texts of a few records without `lang`


def survey(vdir: Path, seed: int, val: float, lang_sample: int = 200) -> Survey:
    s = Survey()
    for n, r in read_records(vdir):
        why = check_turns(r)
        if why:
            raise DatagenError(f"{vdir / 'records.jsonl'}:{n}: record {r.id} breaks LLaMA-Factory's ShareGPT "
                               f"rules: {why}; it would be skipped at training time, so nothing was exported")
        s.records += 1
        s.splits[split_of(r.id, seed, val)] += 1
        s.columns["alpaca"] |= optional_columns(to_alpaca(r))
        s.columns["sharegpt"] |= optional_columns(to_sharegpt(r))
        s.methods[r.method or "unknown"] += 1
        s.multi_turn += bool(r.conversation)
        if r.lang:
            s.langs[r.lang] += 1
        elif len(s.no_lang) < lang_sample:
            s.no_lang.append(f"{r.instruction}\n{r.output}")
    if not s.records:
        raise DatagenError(f"{vdir / 'records.jsonl'}: no records to export")
    return s


def languages(s: Survey) -> Counter:
    """Records per language: their `lang` field, and for records without one, langdetect (seeded) on
    a sample, scaled to the records it stands for."""
    from datagen.filters.language import base_language, detect_language

    found = Counter({base_language(k): v for k, v in s.langs.items()})
    if s.no_lang:
        guessed = Counter(base_language(g.lang) for g in map(detect_language, s.no_lang) if g.known)
        without = s.records - sum(s.langs.values())
        for lang, n in guessed.items():
            found[lang] += round(n * without / len(s.no_lang))
    return Counter({k: v for k, v in found.items() if v})


def _row(fmt: str, r: Record, columns: dict[str, set[str]]) -> dict[str, Any]:
    if fmt == "parquet":
        return {"id": r.id, "messages": to_messages(r)["messages"], "lang": r.lang, "method": r.method}
    if fmt == "messages":
        return {"id": r.id, **to_messages(r)}
    row = to_alpaca(r) if fmt == "alpaca" else to_sharegpt(r)
    row = {"id": r.id, **row}
    for col in columns[fmt]:            # the same columns in every row of the file
        row.setdefault(col, _OPTIONAL_DEFAULT[col])
    return row


def file_name(fmt: str, split: str) -> str:
    return f"{fmt}/{split}.{'parquet' if fmt == 'parquet' else 'jsonl'}"


def _write_files(stage: Path, vdir: Path, formats: list[str], seed: int, val: float, s: Survey) -> None:
    present = [sp for sp in SPLITS if s.splits[sp]]
    handles = {}
    parquet_rows: dict[str, list[dict[str, Any]]] = {sp: [] for sp in present}
    for fmt in formats:
        (stage / fmt).mkdir()
        if fmt != "parquet":
            for sp in present:
                handles[fmt, sp] = open(stage / file_name(fmt, sp), "w", encoding="utf-8")
    try:
        for _, r in read_records(vdir):
            sp = split_of(r.id, seed, val)
            for fmt in formats:
                row = _row(fmt, r, s.columns)
                if fmt == "parquet":
                    parquet_rows[sp].append(row)
                else:
                    handles[fmt, sp].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for h in handles.values():
            h.close()
    if "parquet" in formats:
        import polars as pl

        schema = {"id": pl.String, "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
                  "lang": pl.String, "method": pl.String}
        for sp, rows in parquet_rows.items():
            pl.DataFrame(rows, schema=schema).write_parquet(stage / file_name("parquet", sp))


def side_entries(name: str, formats: list[str], splits: list[str], s: Survey) -> dict[str, Any]:
    info = {}
    for fmt in formats:
        for sp in splits:
            key = f"{name}_{fmt}" + ("" if sp == "train" else f"_{sp}")
            info[key] = llamafactory_entry(_SHAPE[fmt], file_name(fmt, sp), s.columns.get(fmt, set()))
    return info


def axolotl_yaml(formats: list[str], splits: list[str]) -> str:
    """An axolotl `datasets:` block over the messages files (chat_template: axolotl's current way to
    read role/content turns; its old `type: sharegpt` is refused by recent versions)."""
    fmt = "messages" if "messages" in formats else "parquet" if "parquet" in formats else None
    lines = ["# axolotl: paste into your config. Paths are relative to this folder: run axolotl here,",
             "# or make them absolute."]
    if fmt is None:
        lines += ["# Export with --format messages (or parquet) to train with axolotl's chat_template.", ""]
        return "\n".join(lines)
    ds_type = "parquet" if fmt == "parquet" else "json"

    def block(key: str, split: str) -> list[str]:
        return [f"{key}:", f"  - path: {file_name(fmt, split)}", f"    ds_type: {ds_type}", "    split: train",
                "    type: chat_template", "    field_messages: messages", "    message_property_mappings:",
                "      role: role", "      content: content", "    roles_to_train: [assistant]"]

    lines += block("datasets", "train")
    if "validation" in splits:
        lines += block("test_datasets", "validation")
    return "\n".join(lines) + "\n"


def export_version(ref: VersionRef, dest: Path, formats: list[str], *, val: float = DEFAULT_VAL, seed: int = 0,
                   force: bool = False, license: str = "other") -> dict[str, Any]:
    """Write the export; returns its summary (also written as DEST/export.json)."""
    from datagen.store.card import export_card
    from datagen.store.versions import check_writable_dir

    formats = [f for f in FORMATS if f in formats]
    dest = check_writable_dir(dest, "--dest")
    store_dir = ref.store.dir.resolve()
    if dest.resolve() == store_dir or store_dir in dest.resolve().parents:
        raise DatagenError(f"--dest: '{dest}' is inside the dataset's store folder {store_dir}; choose a folder "
                           "outside it (published versions are never changed)")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise DatagenError(f"--dest: '{dest}' is not empty (add --force to replace it)")
    manifest = read_manifest(ref.dir)
    s = survey(ref.dir, seed, val)
    splits = [sp for sp in SPLITS if s.splits[sp]]
    summary = {
        "dataset": ref.name, "version": ref.version, "source": str(ref.dir.resolve()),
        "formats": formats, "val": val, "seed": seed,
        "split_rule": "validation if sha256('datagen-split\\0<seed>\\0<record id>')[:8] < val * 2^64",
        "counts": {sp: s.splits[sp] for sp in SPLITS},
        "files": {fmt: {sp: file_name(fmt, sp) for sp in splits} for fmt in formats},
    }
    home = dest.parent          # build beside DEST, or in its nearest existing folder: no folder is
    while not home.exists():    # created for an export that fails
        home = home.parent
    stage = home / f".{dest.name}.export-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        _write_files(stage, ref.dir, formats, seed, val, s)
        (stage / "dataset_info.json").write_text(
            json.dumps(side_entries(ref.name, formats, splits, s), indent=2) + "\n", encoding="utf-8")
        (stage / "axolotl.yaml").write_text(axolotl_yaml(formats, splits), encoding="utf-8")
        (stage / "README.md").write_text(
            export_card(ref, manifest, s, languages(s), formats, splits, license, seed, val), encoding="utf-8")
        (stage / "export.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        _replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return summary


def _replace(stage: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or not any(dest.iterdir()):
        if dest.exists():
            dest.rmdir()
        os.rename(stage, dest)
        return
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except OSError:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
