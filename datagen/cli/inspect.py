"""`datagen why`: where and why a record was kept or dropped, searched through a dataset's versions."""
from __future__ import annotations

import json
from pathlib import Path

import typer
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
