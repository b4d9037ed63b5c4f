"""Reading versions side by side: the versions table, a diff of two versions by record id, and the
statistics `datagen show` prints. Everything comes from each version's manifest.json and records.jsonl."""
from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from datagen.store.card import funnel, usage_totals
from datagen.store.exporting import read_manifest, read_records
from datagen.store.refs import VersionRef
from datagen.store.versions import DatasetStore


def version_rows(store: DatasetStore) -> list[dict[str, Any]]:
    """One row per published version, oldest first."""
    latest = store.latest()
    rows = []
    for v in store.versions():
        vdir = store.dir / v
        try:
            m = read_manifest(vdir)
        except Exception:           # a hand-damaged version still gets a row, marked unreadable
            m = {}
        tokens, cost = usage_totals(m)
        created = (vdir / "manifest.json").stat().st_mtime if (vdir / "manifest.json").exists() else vdir.stat().st_mtime
        counts = m.get("counts") or {}
        files = m.get("files") or {}
        rows.append({
            "version": v, "latest": v == latest,
            "created": datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "recipe": m.get("recipe", "?" if not m else ""),
            "records": files.get("records.jsonl", counts.get("records")),
            "rejected": sum(sum(r.values()) for r in (m.get("rejected") or {}).values()),
            "parent": m.get("parent") or "", "tokens": tokens, "cost_usd": cost,
            "partial": m.get("partial") or "",
        })
    return rows


def _digest(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _index(vdir: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """id -> digest of the whole record, and id -> (instruction, parents) for the summary lines."""
    digests, brief = {}, {}
    for _, r in read_records(vdir):
        d = r.to_dict()
        digests[r.id] = _digest(d)
        brief[r.id] = {"instruction": r.instruction, "parents": r.parents, "method": r.method, "record": d}
    return digests, brief


def diff_versions(a: VersionRef, b: VersionRef, examples: int = 3) -> dict[str, Any]:
    """Records added, removed and changed (same id, other fields differ: the id is a hash of the text,
    so a change is in scores, language, lineage, system prompt or metadata) from A to B, and each
    version's rejections by stage and reason."""
    da, ia = _index(a.dir)
    db, ib = _index(b.dir)
    added = [k for k in db if k not in da]
    removed = [k for k in da if k not in db]
    changed = [k for k in db if k in da and da[k] != db[k]]
    changed_fields: Counter = Counter()
    for k in changed:
        ra, rb = ia[k]["record"], ib[k]["record"]
        changed_fields.update(f for f in rb.keys() | ra.keys() if ra.get(f) != rb.get(f))
    derived = sum(1 for k in added if any(p in da for p in ib[k]["parents"]))
    ma, mb = read_manifest(a.dir), read_manifest(b.dir)
    stages = sorted({(s, r) for m in (ma, mb) for s, rs in (m.get("rejected") or {}).items() for r in rs})
    rej = [{"stage": s, "reason": r,
            "a": (ma.get("rejected") or {}).get(s, {}).get(r, 0),
            "b": (mb.get("rejected") or {}).get(s, {}).get(r, 0)} for s, r in stages]
    return {
        "a": a.label, "b": b.label, "records_a": len(da), "records_b": len(db),
        "added": len(added), "removed": len(removed), "changed": len(changed), "unchanged": len(db) - len(added) - len(changed),
        "added_from_a": derived,
        "changed_fields": dict(changed_fields.most_common()),
        "examples": {"added": [(k, ib[k]["instruction"]) for k in added[:examples]],
                     "removed": [(k, ia[k]["instruction"]) for k in removed[:examples]],
                     "changed": [(k, ib[k]["instruction"]) for k in changed[:examples]]},
        "rejected": rej,
    }


def _pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def version_stats(ref: VersionRef, samples: int = 3, seed: int = 0) -> dict[str, Any]:
    """What `datagen show` prints: counts by method, language, round and operation, lengths in words,
    the rejection funnel, usage, and `samples` records picked by a seeded hash of their ids."""
    m = read_manifest(ref.dir)
    methods, langs, rounds, ops = Counter(), Counter(), Counter(), Counter()
    ins_words, out_words, turns = [], [], []
    picks: list[tuple[str, dict[str, Any]]] = []
    n = 0
    for _, r in read_records(ref.dir):
        n += 1
        methods[r.method or "unknown"] += 1
        langs[r.lang or "-"] += 1
        if r.method == "evol":
            rounds[r.round] += 1
            ops[r.op or "-"] += 1
        ins_words.append(len(r.instruction.split()) + len(r.input.split()))
        out_words.append(len((r.conversation[-1]["content"] if r.conversation else r.output).split()))
        turns.append(len([t for t in r.conversation if t["role"] != "system"]) if r.conversation else 2)
        key = hashlib.sha256(f"{seed}\0{r.id}".encode()).hexdigest()
        picks.append((key, r.to_dict()))
        picks.sort(key=lambda kv: kv[0])
        del picks[samples:]
    tokens, cost = usage_totals(m)

    def lengths(v: list[int]) -> dict[str, Any]:
        return {"mean": round(statistics.fmean(v), 1) if v else 0, "median": _pct(v, 0.5), "p90": _pct(v, 0.9),
                "max": max(v, default=0)}

    return {
        "label": ref.label, "dir": str(ref.dir), "recipe": m.get("recipe", ""), "parent": m.get("parent") or "",
        "partial": m.get("partial") or "", "teacher": (m.get("teacher") or {}).get("model") or "",
        "records": n, "methods": dict(methods.most_common()), "langs": dict(langs.most_common()),
        "evol_rounds": dict(sorted(rounds.items())), "evol_ops": dict(ops.most_common()),
        "multi_turn": sum(t > 2 for t in turns),
        "instruction_words": lengths(ins_words), "output_words": lengths(out_words),
        "funnel": funnel(m, n), "tokens": tokens, "cost_usd": cost,
        "samples": [d for _, d in picks],
    }
