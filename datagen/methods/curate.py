"""Curation: run a configured chain of dedup and filter steps over a stream of records.

Steps run in the order written. Records move through in chunks so the vectorised dedups (MinHash)
hash a batch at a time, yet every decision is the one a record-by-record pass would make: step k
sees exactly the survivors of steps 1..k-1, in input order.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

from datagen.errors import DatagenError
from datagen.filters.exact_dedup import ExactDedup, record_text
from datagen.filters.heuristics import FILTERS, build_filter
from datagen.filters.minhash import MinHashDedup, representatives
from datagen.filters.params import strings
from datagen.filters.rouge_novelty import RougeNovelty
from datagen.filters.verdict import KEEP, Verdict
from datagen.records import Record

CHUNK = 4096


@dataclass
class Step:
    name: str
    config: dict[str, Any]
    judge: Callable[[list[Record]], list[Verdict]]    # a chunk in, one verdict per record out
    counts: Counter = field(default_factory=Counter)
    needs_all: bool = False   # must see every record at once (best-of-cluster choice), not chunks


def _construct(name: str, cls: type, params: dict[str, Any]) -> Any:
    import inspect

    accepted = [p.name for p in inspect.signature(cls).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in params:
        if key not in accepted:
            raise DatagenError(f"filter '{name}': unknown parameter '{key}' (known: {', '.join(accepted)})")
    try:
        return cls(**params)
    except TypeError as e:
        raise DatagenError(f"filter '{name}': {e}") from None


def _exact(params: dict[str, Any]) -> Step:
    dedup = _construct("exact_dedup", ExactDedup, params)
    return Step("exact_dedup", dedup.config(),
                lambda chunk: [dedup.check_and_add(r.id, record_text(r, dedup.fields)) for r in chunk])


def _minhash(params: dict[str, Any]) -> Step:
    params = dict(params)
    keep = params.pop("keep", "first")
    score_key = params.pop("score_key", "judge")
    if keep not in ("first", "best"):
        raise DatagenError(f"filter 'minhash': keep must be 'first' or 'best', got {keep!r}")
    if not isinstance(score_key, str):
        raise DatagenError(f"filter 'minhash': score_key must be a string, got {score_key!r}")
    dedup = _construct("minhash", MinHashDedup, params)
    config = {**dedup.config(), "keep": keep, **({"score_key": score_key} if keep == "best" else {})}
    if keep == "best":
        # The best-scored member of a cluster can come last, so this step needs the whole stream at once.
        def best(records: list[Record]) -> list[Verdict]:
            chosen = representatives(records, score_key=score_key, dedup=dedup)
            dropped = {id(r): v for r, v in chosen.dropped}
            return [dropped.get(id(r), KEEP) for r in records]
        return Step("minhash", config, best, needs_all=True)
    return Step("minhash", config,
                lambda chunk: list(dedup.check_and_add_many((r.id, record_text(r, dedup.fields)) for r in chunk)))


def _rouge(params: dict[str, Any]) -> Step:
    params = dict(params)
    fld = params.pop("field", "instruction")
    if fld not in ("instruction", "input", "output"):
        raise DatagenError(f"filter 'rouge': field must be instruction, input or output, got {fld!r}")
    index = _construct("rouge", RougeNovelty, params)
    ids_by_text: dict[bytes, str] = {}   # digest of the kept text -> its record id (no second copy of texts)

    def judge(chunk: list[Record]) -> list[Verdict]:
        out = []
        for r in chunk:
            text = getattr(r, fld)
            v = index.check_and_add(text)
            if v.keep:
                ids_by_text.setdefault(_digest(text), r.id)
            else:
                similar = v.detail.get("most_similar")
                if isinstance(similar, list) and similar:   # [[text, score], ...]
                    similar = similar[0][0]
                v = Verdict(False, v.reason, {**v.detail, "duplicate_of": ids_by_text.get(_digest(similar or ""))})
            out.append(v)
        return out

    return Step("rouge", {"threshold": index.threshold, "tokenizer": index.tokenizer_name, "field": fld}, judge)


def _pure(name: str, params: dict[str, Any], base_dir: Path | None) -> Step:
    if name == "decontaminate":
        files = params.get("paths", params.get("files"))
        if files is None:
            raise DatagenError("filter 'decontaminate': paths: give at least one eval file (JSONL or text)")
        files = strings("filter 'decontaminate': paths", files, allow_empty=False)
        params = {k: v for k, v in params.items() if k != "files"}
        params["paths"] = [str(base_dir / f) if base_dir is not None and not Path(f).is_absolute() else f
                           for f in files]
    f = build_filter(name, **params)
    cfg = {k: v for k, v in params.items()}
    return Step(name, cfg, lambda chunk: [f(r) for r in chunk])


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


STATEFUL = {"exact_dedup": _exact, "minhash": _minhash, "rouge": _rouge}


def step_names() -> list[str]:
    return sorted([*STATEFUL, *FILTERS])


def build_chain(spec: Iterable[Any], base_dir: Path | None = None, where: str = "config") -> list[Step]:
    """`spec`: a list whose items are a name, or a one-key mapping {name: {params}}."""
    steps = []
    for i, item in enumerate(spec, 1):
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = params or {}
        else:
            raise DatagenError(f"{where}: filters[{i}]: expected a name or {{name: {{params}}}}, got {item!r}")
        if not isinstance(params, dict):
            raise DatagenError(f"{where}: filters[{i}] '{name}': parameters must be a mapping")
        if not isinstance(name, str) or name not in STATEFUL and name not in FILTERS:
            raise DatagenError(f"{where}: filters[{i}]: unknown step '{name}'; known: {', '.join(step_names())}")
        try:
            steps.append(STATEFUL[name](params) if name in STATEFUL else _pure(name, params, base_dir))
        except DatagenError as e:
            raise DatagenError(f"{where}: filters[{i}]: {e}") from None
    if not steps:
        raise DatagenError(f"{where}: the filter chain is empty")
    return steps


def _holds_text(r: Record) -> bool:
    return bool(r.instruction.strip() or r.input.strip() or r.output.strip()
                or any(str(t.get("content") or "").strip() for t in r.conversation))


def run_chain(records: Iterable[Record], steps: list[Step], keep: Callable[[Record], None],
              reject: Callable[[dict[str, Any]], None]) -> Counter:
    """Feed every record through the steps; kept ones go to `keep`, the others to `reject` with why."""
    totals: Counter = Counter({"in": 0, "kept": 0})  # an empty stream still reports its counts
    it = iter(records)
    size = None if any(s.needs_all for s in steps) else CHUNK   # None: one chunk holding everything
    while chunk := list(islice(it, size)):
        totals["in"] += len(chunk)
        alive = []
        for r in chunk:     # a row with no text at all ({"text": ""}, {"messages": []}) is no training example
            if _holds_text(r):
                alive.append(r)
                continue
            totals["empty_record"] += 1
            reject({"id": r.id, "stage": "read", "reason": "empty_record", "detail": {"note": "no text in any field"},
                    "text": r.instruction, "record": r.to_dict()})
        for step in steps:
            verdicts = step.judge(alive)
            survivors = []
            for r, v in zip(alive, verdicts):
                if v.keep:
                    survivors.append(r)
                    step.counts["kept"] += 1
                    continue
                step.counts[v.reason] += 1
                reject({"id": r.id, "stage": step.name, "reason": v.reason, "detail": dict(v.detail),
                        "text": r.instruction, "record": r.to_dict()})
            alive = survivors
        for r in alive:
            keep(r)
        totals["kept"] += len(alive)
        del chunk, alive, survivors  # let this chunk go before the next one is read
    totals["rejected"] = totals["in"] - totals["kept"]
    return totals

