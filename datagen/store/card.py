"""Hugging Face dataset card for an export: YAML front matter the Hub (and `datasets.load_dataset(DIR)`)
reads — licence, languages, task, size, tags, and one `configs` entry per format naming its split
files — then a summary a person reads: how the data was made, by which teacher, how much of it, and
what the filters threw away at each stage (the rejection funnel)."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from datagen.store.exporting import Survey
    from datagen.store.refs import VersionRef

METHOD_TAGS = {"self_instruct": "self-instruct", "evol": "evol-instruct", "distill": "distillation",
               "translate": "translation", "seed": "seed-tasks"}
METHOD_PROSE = {"self_instruct": "Self-Instruct (new tasks bootstrapped from seed tasks)",
                "evol": "Evol-Instruct (instructions rewritten into harder or rarer ones)",
                "distill": "distillation (the teacher answers, or holds whole conversations)",
                "translate": "translation of other records", "seed": "seed tasks, kept as they are"}
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "n>100M")


def funnel(manifest: dict[str, Any], kept: int) -> list[tuple[str, int, int, dict[str, int]]]:
    """(stage, rejected, left after it, reasons) in the order the recipe's stages ran (stages the
    manifest does not list come after, in the manifest's order); starts from kept + every rejection."""
    rejected: dict[str, dict[str, int]] = manifest.get("rejected") or {}
    order = [s for s in manifest.get("stages") or [] if s in rejected]
    order += [s for s in rejected if s not in order]        # the manifest's own order (a curate chain's)
    left = kept + sum(sum(r.values()) for r in rejected.values())
    rows = []
    for stage in order:
        n = sum(rejected[stage].values())
        left -= n
        rows.append((stage, n, left, dict(sorted(rejected[stage].items(), key=lambda kv: (-kv[1], kv[0])))))
    return rows


def filter_settings(filters: Any) -> list[tuple[str, str]]:
    """(name, "k=v, ...") for a manifest's `filters`: a recipe writes {name: settings}, a dedup/filter
    chain [{"step": name, **settings}, ...]."""
    def params(d: Any) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items() if k != "step") if isinstance(d, dict) else str(d)

    if isinstance(filters, dict):
        return [(str(k), params(v)) for k, v in filters.items()]
    if isinstance(filters, list):
        return [(str(f.get("step", "?")), params(f)) if isinstance(f, dict) else (str(f), "") for f in filters]
    return []


def funnel_lines(manifest: dict[str, Any], kept: int) -> list[str]:
    rows = funnel(manifest, kept)
    if not rows:
        return ["No candidate was rejected.", ""]
    start = kept + sum(n for _, n, _, _ in rows)
    lines = [f"{start:,} candidates, {kept:,} kept. Stages in the order they ran:", "",
             "| stage | rejected | left | reasons |", "|---|---:|---:|---|"]
    for stage, n, left, reasons in rows:
        why = ", ".join(f"{r} {c:,}" for r, c in reasons.items())
        lines.append(f"| {stage} | {n:,} | {left:,} | {why} |")
    return lines + [""]


def usage_totals(manifest: dict[str, Any]) -> tuple[int, float | None]:
    tokens, cost, priced = 0, 0.0, False
    for u in manifest.get("usage") or []:
        tokens += int(u.get("total_tokens") or (u.get("prompt_tokens") or 0) + (u.get("completion_tokens") or 0))
        if u.get("cost_usd") is not None:
            cost += float(u["cost_usd"])
            priced = True
    return tokens, (cost if priced else None)


def _role(manifest: dict[str, Any], key: str) -> str:
    info = manifest.get(key) or {}
    model = info.get("model")
    if not model:
        return ""
    host = info.get("host")
    return f"`{model}`" + (f" at {host}" if host else "") + (" (same as the teacher)" if info.get("same_as") else "")


def card_formats(formats: list[str]) -> list[str]:
    jsonl = [f for f in formats if f != "parquet"]
    return jsonl or list(formats)


def front_matter(name: str, license: str, langs: Counter, records: int, methods: Counter, recipe: str,
                 formats: list[str], splits: list[str]) -> dict[str, Any]:
    from datagen.store.exporting import file_name

    tags = ["synthetic", "datagen", "instruction-tuning"] + [METHOD_TAGS.get(m, m) for m in sorted(methods)]
    if recipe and recipe not in tags:
        tags.append(recipe)
    # `datasets.load_dataset(DIR)` picks one file reader for the whole folder (from its most common
    # extension), so a parquet config next to JSONL ones fails to load (measured, datasets 5.2): the
    # card's configs name the JSONL formats, or the parquet files when they are all there is.
    carded = card_formats(formats)
    default = "messages" if "messages" in carded else carded[0]
    meta: dict[str, Any] = {"license": license}
    if langs:
        meta["language"] = [lang for lang, _ in langs.most_common()]
    meta.update({
        "task_categories": ["text-generation"],
        "size_categories": [size_category(records)],
        "tags": list(dict.fromkeys(tags)),
        "pretty_name": name,
        "configs": [{"config_name": fmt, **({"default": True} if fmt == default else {}),
                     "data_files": [{"split": sp, "path": file_name(fmt, sp)} for sp in splits]}
                    for fmt in carded],
    })
    return meta


def export_card(ref: "VersionRef", manifest: dict[str, Any], s: "Survey", langs: Counter, formats: list[str],
                splits: list[str], license: str, seed: int, val: float) -> str:
    from datagen.store.exporting import file_name

    meta = front_matter(ref.name, license, langs, s.records, s.methods, manifest.get("recipe", ""), formats, splits)
    teacher = _role(manifest, "teacher")
    tokens, cost = usage_totals(manifest)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {ref.name} ({ref.version})", "",
             f"Instruction-tuning data made by datagen {manifest.get('datagen_version', '')} with the "
             f"`{manifest.get('recipe', '?')}` recipe" + (f" from {manifest['parent']}" if manifest.get("parent") else "")
             + ". Machine-generated: review it before training; the teacher's licence terms apply to its outputs.",
             "", "## How it was made", ""]
    for m, n in s.methods.most_common():
        lines.append(f"- {METHOD_PROSE.get(m, m)}: {n:,} record{'s' if n != 1 else ''}")
    if teacher:
        lines.append(f"- teacher: {teacher}")
    ran = set(manifest.get("stages") or []) | set(manifest.get("rejected") or {})
    for key, stage in (("judge", "judge"), ("translator", "translate")):
        if _role(manifest, key) and stage in ran:       # the manifest names a judge even when none ran
            lines.append(f"- {key}: {_role(manifest, key)}")
    if tokens:
        lines.append(f"- tokens (every role): {tokens:,}" + (f", cost ${cost:.4f}" if cost is not None else ""))
    src = manifest.get("seeds") or {}
    if src.get("path"):
        lines.append(f"- source: {src['path']}" + (f" (sha256 {src['sha256'][:12]}…)" if src.get("sha256") else ""))
    lines += ["", "## Counts", "", "| split | records |", "|---|---:|"]
    lines += [f"| {sp} | {s.splits[sp]:,} |" for sp in splits]
    lines += ["", f"Multi-turn conversations: {s.multi_turn:,}; single-turn records: {s.records - s.multi_turn:,}."]
    if langs:
        lines.append("Languages: " + ", ".join(f"{k} {v:,}" for k, v in langs.most_common())
                     + " (a record's `lang`, else langdetect on a sample).")
    lines += ["", "## Filters and the rejection funnel", ""]
    if manifest.get("stages"):
        lines += ["Stages: " + " → ".join(manifest["stages"]), ""]
    filters = filter_settings(manifest.get("filters"))
    lines += [f"- filter `{name}`" + (f": {params}" if params else "") for name, params in filters]
    if filters:
        lines.append("")
    lines += funnel_lines(manifest, s.records)
    lines += ["## Files", ""]
    for fmt in formats:
        lines.append(f"- `{fmt}`: " + ", ".join(f"`{file_name(fmt, sp)}`" for sp in splits)
                     + ("" if fmt in card_formats(formats) else " (the messages rows with `id`, `lang` and `method`; "
                        "not a card config, since one folder loads with one file reader: "
                        f"`load_dataset(\"parquet\", data_files=...)`)"))
    lines += ["- `dataset_info.json`: LLaMA-Factory entries (`dataset_dir` = this folder)",
              "- `axolotl.yaml`: an axolotl `datasets:` block (`type: chat_template`)",
              "- `export.json`: source version, split rule, seed and counts",
              "", f"The split is fixed by record id (`--seed {seed} --val {val}`): a record stays in its split in "
              "every later version exported with the same two flags.", ""]
    return "\n".join(lines)
