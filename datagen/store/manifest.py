"""What a published version says about itself: enough to reproduce, audit and cost it (DESIGN §4)."""
from __future__ import annotations

import platform
import subprocess
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import datagen

_SECRET_KEYS = {"key", "api_key", "apikey", "token", "access_token", "secret", "password", "authorization"}
_SECRET_SUFFIXES = ("_key", "_secret", "_password", "_token")


def _is_secret(key: str) -> bool:
    k = key.lower()
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def redact(config: Any) -> Any:
    """Drop anything that looks like a credential; keep hosts, not full URLs with userinfo."""
    if isinstance(config, dict):
        out = {}
        for k, v in config.items():
            if _is_secret(k):
                out[k] = "<redacted>" if v else v
            elif k == "base_url" and isinstance(v, str):
                out["host"] = urlsplit(v).hostname   # a URL may carry credentials or a private path
            else:
                out[k] = redact(v)
        return out
    if isinstance(config, list):
        return [redact(v) for v in config]
    return config


def git_commit() -> str | None:
    repo = Path(datagen.__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def rejection_counts(rejected: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    by_stage: dict[str, Counter] = {}
    for row in rejected:
        by_stage.setdefault(row["stage"], Counter())[row["reason"]] += 1
    return {stage: dict(sorted(c.items())) for stage, c in sorted(by_stage.items())}


def build_manifest(*, recipe: str, config: dict[str, Any], seeds: dict[str, Any], templates: dict[str, str],
                   teacher: dict[str, Any], counts: dict[str, Any], usage: list[dict[str, Any]],
                   timings: dict[str, float], rejected: list[dict[str, Any]], run_id: str,
                   parent: str | None = None, partial: str | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "datagen_version": datagen.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "recipe": recipe,
        "run_id": run_id,
        "parent": parent,
        "partial": partial,
        "config": redact(config),
        "seeds": seeds,
        "prompt_templates_sha256": templates,
        "teacher": redact(teacher),
        "counts": counts,
        "rejected": rejection_counts(rejected),
        "usage": usage,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        **(extra or {}),
    }


def dataset_card(name: str, manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    lines = [
        f"# {name} {{{{version}}}}",
        "",
        f"Made by datagen {manifest['datagen_version']} with the `{manifest['recipe']}` recipe"
        + (f" (teacher: {manifest['teacher'].get('model')} at {manifest['teacher'].get('host')})"
           if manifest["teacher"].get("model") else "")
        + (f" from {manifest['parent']}" if manifest.get("parent") else "") + ".",
        "",
        f"- records: {counts.get('records', 0)} ({counts.get('instructions', 0)} instructions)",
        f"- rejected candidates: {sum(sum(v.values()) for v in manifest['rejected'].values())} "
        "(see rejected.jsonl, each with its stage and reason)",
        f"- source: {manifest['seeds'].get('path')} (sha256 {manifest['seeds'].get('sha256', '')[:12]}…)",
        "",
    ]
    if manifest["rejected"]:
        from datagen.store.card import funnel_lines
        lines += ["## Rejection funnel", "", *funnel_lines(manifest, counts.get("records", 0))]
    if manifest.get("partial"):
        lines += [f"**Partial version**: the run stopped early ({manifest['partial']}): "
                  f"{manifest.get('partial_reason') or manifest['partial']}. It holds what was finished.", ""]
    lines += [
        "Files: `alpaca.jsonl` (instruction/input/output), `sharegpt.jsonl` (conversations), "
        "`messages.jsonl` (OpenAI messages), `records.jsonl` (full lineage), `rejected.jsonl`, "
        "`manifest.json`, `dataset_info.json` (LLaMA-Factory).",
        "",
        f"Train/validation files for LLaMA-Factory, axolotl, TRL and the Hugging Face Hub: "
        f"`datagen export {name}@{{{{version}}}} --dest DIR`.",
        "",
        "Machine-generated data: review before training; the teacher's licence terms apply to its outputs.",
        "",
    ]
    return "\n".join(lines)
