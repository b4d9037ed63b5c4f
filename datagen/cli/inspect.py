"""`datagen why` (where and why a record was kept or dropped), `versions`, `diff` and `show`: reading
published versions without opening their files."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from datagen.cli.app import app
from datagen.cli.output import console


@app.command("why")
def why(
    dataset: str = typer.Argument(..., help="NAME (searches LATEST, its parents, then the other versions, newest first) or NAME@vN (that version only)."),
    record_id: str = typer.Argument(..., help="The record id (or its first characters), from records.jsonl or rejected.jsonl; a later copy of an identical row is <id>-2, <id>-3, ..."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
) -> None:
    """Say whether a record was kept, or at which stage and for what reason it was dropped."""
    from datagen.store.why import explain_spec

    ans = explain_spec(out, dataset, record_id)
    where = f"{ans['version']} ({ans['version_dir']})"
    if ans["searched"]:
        where += f"; not in {', '.join(ans['searched'])}"
    if ans["status"] == "kept":
        r = ans["record"]
        console.print("[green]kept[/] " + escape(f"{r.get('id', '')} in {where}: {r.get('instruction', '')[:200]!r}"), highlight=False)
        if r.get("scores"):
            console.print(f"scores: {json.dumps(r['scores'], ensure_ascii=False)[:500]}", highlight=False, markup=False)
        return
    console.print("[red]dropped[/] " + escape(f"{ans['id']} in {where} at stage {ans['stage']}: {ans['reason']}"),
                  highlight=False)
    console.print(f"text: {ans['text'][:300]!r}", highlight=False, markup=False)
    detail = {k: v for k, v in ans["detail"].items() if k not in ("most_similar",)}
    for key in ("rouge_max", "jaccard_estimate", "score"):
        if key in detail:
            console.print(f"{key}: {detail.pop(key)}", highlight=False, markup=False)
    if "most_similar" in ans["detail"]:
        ms = ans["detail"]["most_similar"]
        console.print(f"most similar: {json.dumps(ms[:3] if isinstance(ms, list) else ms, ensure_ascii=False)[:500]}", highlight=False, markup=False)
    if "collided_with" in ans:
        other = ans["collided_with"]
        console.print(f"collided with {other.get('id')}: {other.get('instruction', other.get('text', ''))[:300]!r}", highlight=False, markup=False)
    if detail:
        console.print(f"detail: {json.dumps(detail, ensure_ascii=False)[:800]}", highlight=False, markup=False)


def _stdout() -> Console:
    """Tables and statistics go to stdout, wide enough for a table when piped to a file."""
    c = Console(highlight=False)
    return c if c.is_terminal else Console(highlight=False, width=200)


def _money(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:.4f}"


@app.command("versions")
def versions(
    dataset: str = typer.Argument(..., help="NAME (under --out) or the path of a dataset folder."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON on stdout."),
) -> None:
    """List a dataset's versions: created, recipe, records, parent, tokens, cost (LATEST marked *)."""
    from rich.table import Table

    from datagen.store.compare import version_rows
    from datagen.store.refs import resolve_dataset

    store = resolve_dataset(dataset, out)
    rows = version_rows(store)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print(escape(f"{store.dir}: no published version"), highlight=False)
        return
    p = _stdout()
    table = Table(title=f"{store.name} ({store.dir})", title_justify="left")
    for col, just in (("version", "left"), ("created (UTC)", "left"), ("recipe", "left"), ("records", "right"),
                      ("rejected", "right"), ("parent", "left"), ("tokens", "right"), ("cost", "right")):
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(r["version"] + (" *" if r["latest"] else "") + (f" ({r['partial']})" if r["partial"] else ""),
                      r["created"], r["recipe"], f"{r['records']:,}" if r["records"] is not None else "?",
                      f"{r['rejected']:,}", r["parent"], f"{r['tokens']:,}", _money(r["cost_usd"]))
    p.print(table)
    p.print("* LATEST", markup=False)


@app.command("diff")
def diff(
    dataset: str = typer.Argument(..., help="NAME (under --out) or the path of a dataset folder."),
    version_a: str = typer.Argument(..., help="The older version (v1, v0001 or 1)."),
    version_b: str = typer.Argument(..., help="The newer version."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    as_json: bool = typer.Option(False, "--json", help="Print the diff as JSON on stdout."),
) -> None:
    """Records added, removed and changed (by id) from version A to B, and rejections side by side."""
    from rich.table import Table

    from datagen.store.compare import diff_versions
    from datagen.store.refs import VersionRef, resolve_dataset

    store = resolve_dataset(dataset, out)
    a, b = (VersionRef(store, (d := store.resolve(v)).name, d) for v in (version_a, version_b))
    d = diff_versions(a, b)
    if as_json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return
    p = _stdout()
    p.print(escape(f"{d['a']} ({d['records_a']:,} records) -> {d['b']} ({d['records_b']:,} records)"))
    p.print(f"added {d['added']:,}   removed {d['removed']:,}   changed {d['changed']:,}   unchanged {d['unchanged']:,}",
            markup=False)
    if d["added_from_a"]:
        p.print(f"{d['added_from_a']:,} added records descend from records of {d['a']}", markup=False)
    if d["changed_fields"]:
        p.print("changed fields: " + ", ".join(f"{k} {v:,}" for k, v in d["changed_fields"].items()), markup=False)
    for kind in ("added", "removed", "changed"):
        for rid, text in d["examples"][kind]:
            p.print(f"  {kind[0].upper() if kind != 'changed' else '~'} {rid}  {text[:100]!r}", markup=False)
    if d["rejected"]:
        table = Table(title="rejected", title_justify="left")
        for col, just in (("stage", "left"), ("reason", "left"), (a.version, "right"), (b.version, "right"), ("change", "right")):
            table.add_column(col, justify=just)
        for r in d["rejected"]:
            table.add_row(r["stage"], r["reason"], f"{r['a']:,}", f"{r['b']:,}", f"{r['b'] - r['a']:+,}")
        p.print(table)


@app.command("show")
def show(
    dataset: str = typer.Argument(..., help="NAME or NAME@vN (under --out), or the path of a dataset or version folder."),
    samples: int = typer.Option(3, "--samples", min=0, max=100, help="How many sample records to print (0-100)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Which samples: records are picked by a hash of seed and id."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder holding published datasets."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON on stdout."),
) -> None:
    """A version's statistics in the terminal, and a few sample records."""
    from rich.table import Table

    from datagen.store.compare import version_stats
    from datagen.store.refs import resolve_version

    s = version_stats(resolve_version(dataset, out), samples=samples, seed=seed)
    if as_json:
        print(json.dumps(s, indent=2, ensure_ascii=False))
        return
    p = _stdout()
    head = f"{s['label']}  {s['dir']}\nrecipe {s['recipe'] or '?'}" + (f", teacher {s['teacher']}" if s["teacher"] else "") \
        + (f", parent {s['parent']}" if s["parent"] else "") + (f", partial ({s['partial']})" if s["partial"] else "")
    p.print(head, markup=False)
    p.print(f"records {s['records']:,} ({s['multi_turn']:,} multi-turn); teacher tokens {s['tokens']:,}, cost {_money(s['cost_usd'])}",
            markup=False)
    for key, label in (("methods", "method"), ("langs", "language"), ("evol_rounds", "evol round"), ("evol_ops", "evol operation")):
        if s[key]:
            p.print(f"{label}: " + ", ".join(f"{k} {v:,}" for k, v in s[key].items()), markup=False)
    for key, label in (("instruction_words", "instruction+input words"), ("output_words", "output words")):
        w = s[key]
        p.print(f"{label}: mean {w['mean']}, median {w['median']}, p90 {w['p90']}, max {w['max']}", markup=False)
    if s["funnel"]:
        table = Table(title="rejection funnel (stages in the order they ran)", title_justify="left")
        for col, just in (("stage", "left"), ("rejected", "right"), ("left", "right"), ("reasons", "left")):
            table.add_column(col, justify=just)
        for stage, n, left, reasons in s["funnel"]:
            table.add_row(stage, f"{n:,}", f"{left:,}", escape(", ".join(f"{r} {c:,}" for r, c in reasons.items())))
        p.print(table)
    for r in s["samples"]:
        p.print(f"\n[{r['id']}] {r['method']}" + (f" lang={r['lang']}" if r.get("lang") else ""), markup=False)
        if r["conversation"]:
            for t in r["conversation"]:
                p.print(f"  {t['role']}: {t['content'][:300]}", markup=False)
        else:
            p.print(f"  instruction: {r['instruction'][:300]}", markup=False)
            if r["input"]:
                p.print(f"  input: {r['input'][:300]}", markup=False)
            p.print(f"  output: {r['output'][:300]}", markup=False)
