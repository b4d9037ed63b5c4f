"""The one JSON parameter a flow run takes, built and validated from flags + YAML + environment.

The CLI and the scheduled deployment build runs the same way, so a `prefect deploy`ed schedule runs
exactly what `datagen run` would. Everything is checked here, before Prefect or a teacher starts.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from datagen.errors import DatagenError

CONFIG_SECTIONS = {"teacher", "self_instruct", "prices", "budget", "assumptions"}


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatagenError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise DatagenError(f"{path}: is a folder, not a YAML config file") from None
    except UnicodeDecodeError as e:
        raise DatagenError(f"{path}: not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise DatagenError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DatagenError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatagenError(f"{path}:1: expected a mapping of settings at the top level")
    return data


# Where a Self-Instruct setting can be given besides YAML and DATAGEN_<NAME>: its flag, for messages.
SELF_INSTRUCT_FLAGS = {"num_instructions": "--num-instructions", "seed": "--seed",
                       "prompts_per_round": "--prompts-per-round", "rouge_tokenizer": "--rouge-tokenizer",
                       "max_tokens": "--max-tokens", "prompts_dir": "--prompts"}


def _env_value(name: str, text: str, default: Any) -> Any:
    kind = type(default) if default is not None else int
    if name == "rouge_threshold":
        kind = float
    if kind is str or name == "prompts_dir":
        return text
    try:
        return kind(text)
    except ValueError:
        raise DatagenError(f"DATAGEN_{name.upper()}: expected {'a number' if kind is float else 'a whole number'}, "
                           f"got '{text}'") from None


def resolve_self_instruct_params(flags: dict[str, Any], section: Any, where: str = "config",
                                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """Flags given > environment (DATAGEN_<SETTING>) > YAML `self_instruct:` > defaults, for every
    setting; a flag left at its default counts as not given (its default is None). A bad value is
    named by the level it came from."""
    import os
    from dataclasses import fields as dc_fields

    from datagen.methods.self_instruct import SelfInstructParams

    env = os.environ if env is None else env
    section = section or {}
    if not isinstance(section, dict):
        raise DatagenError(f"{where}: self_instruct: expected a mapping of settings")
    defaults = {f.name: f.default for f in dc_fields(SelfInstructParams)}
    for key in section:
        if key not in defaults:
            raise DatagenError(f"{where}: unknown self_instruct setting '{key}' (known: {', '.join(sorted(defaults))})")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, default in defaults.items():
        if flags.get(name) is not None:
            merged[name], origin[name] = flags[name], SELF_INSTRUCT_FLAGS.get(name, name)
        elif env.get(f"DATAGEN_{name.upper()}"):
            merged[name] = _env_value(name, env[f"DATAGEN_{name.upper()}"], default)
            origin[name] = f"DATAGEN_{name.upper()}"
        elif name in section:
            merged[name], origin[name] = section[name], f"{where}: self_instruct.{name}"
    try:
        resolved = SelfInstructParams(**merged)
    except ValueError as e:
        name, _, problem = str(e).partition(": ")
        raise DatagenError(f"{origin.get(name, name)}: {problem}") from None
    except TypeError as e:
        raise DatagenError(f"{where}: self_instruct: {e}") from None
    return {f.name: getattr(resolved, f.name) for f in dc_fields(SelfInstructParams)}


def _check_cache_file(path: Path, flag: str) -> None:
    """An existing cache must be a SQLite file: pointing --cache at a seed file would otherwise fail
    inside the flow with sqlite's 'file is not a database'."""
    import sqlite3

    from datagen.teacher.cache import cached_answer_count
    try:
        cached_answer_count(path)
    except sqlite3.Error as e:
        raise DatagenError(f"{flag}: '{path}' is not a datagen response cache (SQLite: {e})") from None


def _check_budget_section(section: Any, where: str) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        raise DatagenError(f"{where}: budget: expected a mapping (max_cost_usd, max_total_tokens)")
    for key, value in section.items():
        if key not in ("max_cost_usd", "max_total_tokens"):
            raise DatagenError(f"{where}: unknown budget setting '{key}' (known: max_cost_usd, max_total_tokens)")
        whole = key == "max_total_tokens"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value < 0:
            raise DatagenError(f"{where}: budget.{key}: expected a non-negative {'whole number' if whole else 'number'}, "
                               f"got {value!r}")


def _check_assumptions(section: Any, where: str) -> None:
    from datagen.methods.estimate import Assumptions

    if section is None:
        return
    if not isinstance(section, dict):
        raise DatagenError(f"{where}: assumptions: expected a mapping of settings")
    from dataclasses import fields as dc_fields

    known = [f.name for f in dc_fields(Assumptions) if f.name != "source"]
    for key in section:
        if key not in known:
            raise DatagenError(f"{where}: unknown assumptions setting '{key}' (known: {', '.join(known)})")
    try:
        Assumptions(**section)
    except TypeError as e:
        raise DatagenError(f"{where}: assumptions: {e}") from None
    except ValueError as e:
        raise DatagenError(f"{where}: {e}") from None


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def self_instruct_run(*, seeds: Path, name: str, out: Path, cfg: dict[str, Any], config_path: Path | None,
                      teacher_flags: dict[str, Any], params: dict[str, Any], cache: Path | None = None,
                      max_cost: float | None = None, max_total_tokens: int | None = None):
    """Returns (run, teacher_config, params); raises DatagenError naming the flag, file or field."""
    from datagen.methods.self_instruct import Templates
    from datagen.store.seeds import load_seeds
    from datagen.store.versions import check_name, check_writable_dir
    from datagen.teacher.budget import Prices
    from datagen.teacher.config import resolve_teacher_config

    unknown = set(cfg) - CONFIG_SECTIONS
    if unknown:
        raise DatagenError(f"{config_path}: unknown top-level setting '{sorted(unknown)[0]}' "
                           f"(expected: {', '.join(sorted(CONFIG_SECTIONS))})")
    check_name(name)
    check_writable_dir(out, "--out")
    if cache is not None:
        check_writable_dir(Path(cache).expanduser().absolute().parent, "--cache")
        if Path(cache).is_dir():
            raise DatagenError(f"--cache: '{cache}' is a folder; give a file path such as {Path(cache) / 'responses.sqlite'}")
    _check_cache_file(Path(cache or Path(out) / ".cache" / "responses.sqlite"), "--cache" if cache else "--out")
    load_seeds(seeds)
    teacher_cfg = resolve_teacher_config(teacher_flags, cfg.get("teacher"), where=str(config_path or "config"))
    if not teacher_cfg.embedded and not teacher_cfg.model:
        raise DatagenError("--model: required when --base-url / OPENAI_BASE_URL points at an endpoint")
    merged = resolve_self_instruct_params(params, cfg.get("self_instruct"), where=str(config_path or "config"))
    Templates.load(merged.get("prompts_dir"))
    Prices(cfg.get("prices") or {})
    _check_budget_section(cfg.get("budget"), str(config_path or "config"))
    _check_assumptions(cfg.get("assumptions"), str(config_path or "config"))
    run = {
        "seeds": str(Path(seeds).resolve()),
        "name": name,
        "out": str(Path(out).resolve()),
        "run_id": new_run_id(),
        "cache": str(Path(cache or Path(out) / ".cache" / "responses.sqlite").resolve()),
        "params": merged,
        "teacher": {k: v for k, v in teacher_flags.items() if v is not None},
        "teacher_yaml": cfg.get("teacher") or {},
        "prices": cfg.get("prices") or {},
        "budget": {**(cfg.get("budget") or {}),
                   **({"max_cost_usd": max_cost} if max_cost is not None else {}),
                   **({"max_total_tokens": max_total_tokens} if max_total_tokens is not None else {})},
    }
    return run, teacher_cfg, merged
