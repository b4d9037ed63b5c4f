"""What a published version shows in the Prefect UI: a table artifact (counts per stage, rejections by
reason, tokens and cost per role) and a markdown artifact (a summary and the version's path).

Both are keyed by the dataset name (`<key>-counts`, `<key>-summary`, see `artifact_key`), so the UI's
Artifacts page keeps one history per dataset: what each night's run produced, one entry per version.
Publishing artifacts is a courtesy: any failure here is a logged warning, never a failed run — the
version is already published when this runs.
"""
from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger

_NOT_KEY = re.compile(r"[^a-z0-9-]+")


def artifact_key(name: str) -> str:
    """A dataset name as a Prefect artifact key (lowercase letters, digits, dashes): `My_Data.v2` ->
    `my-data-v2`. Names differing only in case or in `_` / `.` / `-` share a key."""
    key = _NOT_KEY.sub("-", name.lower()).strip("-")
    return re.sub("-{2,}", "-", key) or "dataset"


def table_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per number: {section, stage, item, value}. Sections: count (the manifest's counts, a
    dotted key `bootstrap.prompts` or a nested `per_stage: {judge: {...}}` split into stage and item),
    rejected (stage, reason), tokens (role, prompt/completion), cost_usd (role)."""
    rows: list[dict[str, Any]] = []

    def counts(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                counts(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts = prefix.split(".")
            if parts[0] in ("per_stage", "per_step") and len(parts) > 2:
                parts = parts[1:]
            stage, item = (parts[0], ".".join(parts[1:])) if len(parts) > 1 else ("run", parts[0])
            rows.append({"section": "count", "stage": stage, "item": item, "value": value})

    counts("", manifest.get("counts") or {})
    for stage, reasons in (manifest.get("rejected") or {}).items():
        for reason, n in (reasons or {}).items():
            rows.append({"section": "rejected", "stage": stage, "item": reason, "value": n})
    for use in manifest.get("usage") or []:
        role = use.get("role", "teacher")
        for kind in ("prompt_tokens", "completion_tokens"):
            rows.append({"section": "tokens", "stage": role, "item": kind.split("_")[0], "value": use.get(kind) or 0})
        if use.get("cost_usd") is not None:
            rows.append({"section": "cost_usd", "stage": role, "item": "", "value": round(use["cost_usd"], 6)})
    return rows


def summary_markdown(name: str, path: str, manifest: dict[str, Any]) -> str:
    """A few lines a person reads in the UI: which version, where it is, what it holds and cost."""
    counts = manifest.get("counts") or {}
    rejected = sum(n for reasons in (manifest.get("rejected") or {}).values() for n in reasons.values())
    tokens = sum((u.get("prompt_tokens") or 0) + (u.get("completion_tokens") or 0) for u in manifest.get("usage") or [])
    costs = [u["cost_usd"] for u in manifest.get("usage") or [] if u.get("cost_usd") is not None]
    version = path.rstrip("/").rsplit("/", 1)[-1]
    lines = [f"# {name} {version}", "",
             f"- recipe: `{manifest.get('recipe', '?')}`",
             f"- path: `{path}`",
             f"- records: {counts.get('records', '?')}, rejected: {rejected}",
             f"- parent: `{manifest['parent']}`" if manifest.get("parent") else "- parent: none",
             f"- tokens: {tokens:,}" + (f", cost: ${sum(costs):.4f}" if costs else ", cost: no price configured")]
    teacher = manifest.get("teacher") or {}
    if teacher.get("model"):
        lines.append(f"- teacher: `{teacher['model']}`" + (f" at {teacher['host']}" if teacher.get("host") else ""))
    if manifest.get("partial"):
        lines.append(f"- **partial**: {manifest.get('partial_reason') or manifest['partial']}")
    lines += ["", f"Inspect with `datagen show {name}@{version}` (add `--out` for a store other than `outputs`)."]
    return "\n".join(lines) + "\n"


def _warn(path: str, error: Exception) -> None:
    try:
        get_run_logger().warning("published %s, but its Prefect artifacts were not created: %s", path, error)
    except Exception:  # noqa: BLE001 — no run context: nothing to log to
        pass


def _artifacts(name: str, path: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    key = artifact_key(name)
    version = path.rstrip("/").rsplit("/", 1)[-1]
    table = {"table": table_rows(manifest), "key": f"{key}-counts",
             "description": f"{name} {version}: counts per stage, rejections by reason, tokens, cost"}
    markdown = {"markdown": summary_markdown(name, path, manifest), "key": f"{key}-summary",
                "description": f"{name} {version}: summary and path"}
    return table, markdown


def publish_artifacts(name: str, path: str, manifest: dict[str, Any]) -> list[str]:
    """Create both artifacts for the version just published (from a sync flow); returns their keys
    ([] when that failed, after a warning in the flow run's log)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    table, markdown = _artifacts(name, path, manifest)
    try:
        create_table_artifact(**table, _sync=True)
        create_markdown_artifact(**markdown, _sync=True)
    except Exception as e:  # noqa: BLE001 — the version is published; the UI summary is optional
        _warn(path, e)
        return []
    return [table["key"], markdown["key"]]


async def apublish_artifacts(name: str, path: str, manifest: dict[str, Any]) -> list[str]:
    """`publish_artifacts` from an async flow."""
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    table, markdown = _artifacts(name, path, manifest)
    try:
        await acreate_table_artifact(**table)
        await acreate_markdown_artifact(**markdown)
    except Exception as e:  # noqa: BLE001 — the version is published; the UI summary is optional
        _warn(path, e)
        return []
    return [table["key"], markdown["key"]]
