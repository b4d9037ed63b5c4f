"""One self-contained HTML page: the charts as inline SVG, the summary as a table, no script and no
external reference. Its Content-Security-Policy forbids loading anything, so a page that opens at all
opens complete, offline."""
from __future__ import annotations

from html import escape
from typing import Any

from datagen.report.charts import Chart
from datagen.report.data import VersionData

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1200px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 0 0 4px; }
.sub { color: #555; margin: 0 0 14px; }
table.summary { border-collapse: collapse; margin: 8px 0 20px; }
table.summary th, table.summary td { border-bottom: 1px solid #ddd; padding: 3px 12px 3px 0; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; color: #555; font-weight: normal; }
td.up { color: #1e7d32; } td.down { color: #b3261e; }
nav a { margin-right: 12px; }
section.chart { border-top: 1px solid #e4e4e4; padding: 14px 0 6px; }
.caption { color: #555; margin: 0 0 8px; max-width: 900px; }
.figure svg { max-width: 100%; height: auto; }
details { margin: 4px 0 8px; } table.numbers { border-collapse: collapse; font-size: 13px; }
table.numbers th, table.numbers td { border-bottom: 1px solid #eee; padding: 2px 10px 2px 0; text-align: left; }
.no-data { color: #8a6d00; background: #fff8e1; border: 1px solid #f0dc9a; padding: 10px 14px; display: inline-block; }
"""


def _num(x: Any) -> str:
    if x == "" or x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.4f}".rstrip("0").rstrip(".") if x else "0"
    return f"{x:,}" if isinstance(x, int) else escape(str(x))


def summary_rows(versions: list[VersionData]) -> list[tuple[str, list[Any]]]:
    """(label, value per version) rows for the table at the top; numbers stay numbers for the delta."""
    rows: list[tuple[str, list[Any]]] = [
        ("recipe", [v.manifest.get("recipe") or "" for v in versions]),
        ("teacher", [(v.manifest.get("teacher") or {}).get("model") or "" for v in versions]),
        ("parent", [v.manifest.get("parent") or "" for v in versions]),
        ("records", [v.records for v in versions]),
        ("rejected", [v.rejected_total for v in versions]),
    ]
    stages = []
    for v in versions:
        stages += [s for s in v.funnel if s not in stages]
    for s in stages:
        rows.append((f"  rejected at {s}", [sum(v.funnel.get(s, {}).values()) for v in versions]))
    rows += [
        ("median instruction tokens", [_median_or_blank(v.instruction_tokens) for v in versions]),
        ("median output tokens", [_median_or_blank(v.output_tokens) for v in versions]),
        ("languages", [len(v.langs) for v in versions]),
        ("judged records", [len(v.judge_scores) for v in versions]),
        ("teacher tokens", [v.usage[0] for v in versions]),
        ("cost (USD)", [round(v.usage[1], 4) for v in versions]),
    ]
    return rows


def _median_or_blank(values: list[int]) -> Any:
    if not values:
        return ""
    s = sorted(values)
    return s[len(s) // 2]


def _summary_table(versions: list[VersionData]) -> str:
    head = "".join(f"<th>{escape(v.label)}</th>" for v in versions)
    if len(versions) == 2:
        head += "<th>change</th>"
    body = []
    for label, values in summary_rows(versions):
        cells = "".join(f"<td>{_num(x)}</td>" for x in values)
        if len(values) == 2:
            a, b = values
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
                delta = b - a
                cls = "up" if delta > 0 else "down" if delta < 0 else ""
                sign = "+" if delta > 0 else ""
                cells += f'<td class="{cls}">{sign}{_num(round(delta, 4) if isinstance(delta, float) else delta)}</td>'
            else:
                cells += "<td>" + ("same" if a == b else "changed") + "</td>"
        body.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    return f'<table class="summary" id="summary"><tr><th></th>{head}</tr>{"".join(body)}</table>'


def _details(table: list[list[str]]) -> str:
    """The numbers behind a chart, folded away under it (labels too small for a wedge are here)."""
    if len(table) < 2:
        return ""
    head = "".join(f"<th>{escape(x)}</th>" for x in table[0])
    rows = "".join("<tr>" + "".join(f"<td>{escape(x)}</td>" for x in row) + "</tr>" for row in table[1:])
    return f'<details><summary>as a table</summary><table class="numbers"><tr>{head}</tr>{rows}</table></details>'


def page(versions: list[VersionData], charts: list[Chart]) -> str:
    title = " vs ".join(v.label for v in versions)
    sub = " · ".join(f"{escape(v.label)}: {escape(str(v.dir))}" for v in versions)
    nav = "".join(f'<a href="#chart-{c.key}">{escape(c.title)}</a>' for c in charts)
    sections = []
    for c in charts:
        if c.svg:
            inner = (f'<p class="caption">{escape(c.caption)}</p>'
                     f'<div class="figure">{c.svg}</div>{_details(c.table)}')
            state = "drawn"
        else:
            inner = f'<div class="no-data">no data: {escape(c.no_data)}</div>'
            state = "no-data"
        sections.append(f'<section class="chart" id="chart-{c.key}" data-chart="{c.key}" data-state="{state}">'
                        f'<h2>{escape(c.title)}</h2>{inner}</section>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>datagen report: {escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"sub\">{sub}</p>"
        f"{_summary_table(versions)}<nav>{nav}</nav>{''.join(sections)}"
        "</body></html>\n"
    )
