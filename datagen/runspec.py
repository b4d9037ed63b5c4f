"""The one JSON parameter a flow run takes, built and validated from flags + YAML + environment.

The CLI and the scheduled deployment build runs the same way, so a `prefect deploy`ed schedule runs
exactly what `datagen run` would. Everything is checked here, before Prefect or a teacher starts.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datagen.errors import DatagenError

CONFIG_SECTIONS = {"teacher", "judge", "self_instruct", "alpaca", "evol", "distill", "judging", "prices", "budget",
                   "assumptions", "translate", "translator"}
PIPELINE_KEYS = {"name", "input", "stages"}


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
                       "max_tokens": "--max-tokens", "prompts_dir": "--prompts", "schedule": "--schedule",
                       "window": "--window"}


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


def resolve_section(cls: type, flags: dict[str, Any], section: Any, section_name: str,
                    flag_names: dict[str, str], where: str = "config") -> dict[str, Any]:
    """A method's typed settings (a dataclass): flags given > YAML `<section_name>:` > defaults. A bad
    value is one error naming the flag or the config field it came from."""
    from dataclasses import fields as dc_fields

    section = section or {}
    if not isinstance(section, dict):
        raise DatagenError(f"{where}: {section_name}: expected a mapping of settings")
    names = [f.name for f in dc_fields(cls)]
    for key in section:
        if key not in names:
            raise DatagenError(f"{where}: unknown {section_name} setting '{key}' (known: {', '.join(sorted(names))})")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in names:
        if flags.get(name) is not None:
            merged[name], origin[name] = flags[name], flag_names.get(name, name)
        elif name in section:
            merged[name], origin[name] = section[name], f"{where}: {section_name}.{name}"
    try:
        resolved = cls(**merged)
    except ValueError as e:
        name, _, problem = str(e).partition(": ")
        raise DatagenError(f"{origin.get(name, f'{where}: {section_name}.{name}')}: {problem}") from None
    except TypeError as e:
        raise DatagenError(f"{where}: {section_name}: {e}") from None
    return {name: getattr(resolved, name) for name in names}


def base_run(*, name: str, out: Path, cfg: dict[str, Any], config_path: Path | None, teacher_flags: dict[str, Any],
             judge_flags: dict[str, Any] | None = None, cache: Path | None = None, max_cost: float | None = None,
             max_total_tokens: int | None = None, allowed: set[str] | None = None) -> tuple[dict[str, Any], Any]:
    """What every recipe's run holds and checks, before Prefect or a teacher starts: name, store,
    cache, the teacher and judge roles, prices and budget. Returns (run, teacher_config)."""
    from datagen.store.versions import check_name, check_writable_dir
    from datagen.teacher.budget import Prices
    from datagen.teacher.config import resolve_role_config, resolve_teacher_config

    allowed = CONFIG_SECTIONS if allowed is None else allowed
    unknown = set(cfg) - allowed
    if unknown:
        raise DatagenError(f"{config_path}: unknown top-level setting '{sorted(unknown)[0]}' "
                           f"(expected: {', '.join(sorted(allowed))})")
    where = str(config_path or "config")
    check_name(name)
    check_writable_dir(out, "--out")
    if cache is not None:
        check_writable_dir(Path(cache).expanduser().absolute().parent, "--cache")
        if Path(cache).is_dir():
            raise DatagenError(f"--cache: '{cache}' is a folder; give a file path such as {Path(cache) / 'responses.sqlite'}")
    _check_cache_file(Path(cache or Path(out) / ".cache" / "responses.sqlite"), "--cache" if cache else "--out")
    teacher_cfg = resolve_teacher_config(teacher_flags, cfg.get("teacher"), where=where)
    if not teacher_cfg.embedded and not teacher_cfg.model:
        raise DatagenError("--model: required when --base-url / OPENAI_BASE_URL points at an endpoint")
    judge_flags = {k: v for k, v in (judge_flags or {}).items() if v is not None}
    resolve_role_config("judge", judge_flags, cfg.get("judge"), teacher_cfg, where=where)
    Prices(cfg.get("prices") or {})
    _check_budget_section(cfg.get("budget"), where)
    run = {
        "name": name,
        "out": str(Path(out).resolve()),
        "run_id": new_run_id(),
        "cache": str(Path(cache or Path(out) / ".cache" / "responses.sqlite").resolve()),
        "teacher": {k: v for k, v in teacher_flags.items() if v is not None},
        "teacher_yaml": cfg.get("teacher") or {},
        "judge": judge_flags,
        "judge_yaml": cfg.get("judge") or {},
        "prices": cfg.get("prices") or {},
        "budget": {**(cfg.get("budget") or {}),
                   **({"max_cost_usd": max_cost} if max_cost is not None else {}),
                   **({"max_total_tokens": max_total_tokens} if max_total_tokens is not None else {})},
    }
    return run, teacher_cfg


def self_instruct_run(*, seeds: Path, name: str, out: Path, cfg: dict[str, Any], config_path: Path | None,
                      teacher_flags: dict[str, Any], params: dict[str, Any], cache: Path | None = None,
                      max_cost: float | None = None, max_total_tokens: int | None = None, variant: str = "self-instruct",
                      judge_flags: dict[str, Any] | None = None, judging: dict[str, Any] | None = None,
                      extend: bool = False):
    """Returns (run, teacher_config, params); raises DatagenError naming the flag, file or field.
    `extend`: the run continues the LATEST of OUT/NAME when there is one (see `extend_target`)."""
    from datagen.methods.self_instruct import Templates
    from datagen.store.seeds import load_seeds

    run, teacher_cfg = base_run(name=name, out=out, cfg=cfg, config_path=config_path, teacher_flags=teacher_flags,
                                judge_flags=judge_flags, cache=cache, max_cost=max_cost,
                                max_total_tokens=max_total_tokens)
    load_seeds(seeds)
    run["extend"] = bool(extend)
    where = str(config_path or "config")
    # Self-Instruct judges nothing unless asked (the paper has no judge): mode defaults to off here.
    judging = dict(judging or {})
    section = dict(cfg.get("judging") or {}) if isinstance(cfg.get("judging"), dict) else cfg.get("judging")
    if isinstance(section, dict):
        section.setdefault("mode", "off")
    run["judging"] = _judging(judging, cfg, where, section if section is not None else {"mode": "off"})
    if variant == "alpaca":
        from datagen.methods.alpaca import AlpacaParams, AlpacaTemplates
        flag_names = {**SELF_INSTRUCT_FLAGS}
        merged = resolve_section(AlpacaParams, params, cfg.get("alpaca"), "alpaca", flag_names, where)
        AlpacaTemplates.load(merged.get("prompts_dir"))
        _check_assumptions(cfg.get("assumptions"), where)
        run.update({"seeds": str(Path(seeds).resolve()), "params": merged, "variant": "alpaca"})
        return run, teacher_cfg, merged
    merged = resolve_self_instruct_params(params, cfg.get("self_instruct"), where=where)
    Templates.load(merged.get("prompts_dir"))
    _check_assumptions(cfg.get("assumptions"), where)
    run.update({"seeds": str(Path(seeds).resolve()), "params": merged})
    return run, teacher_cfg, merged


def extend_target(spec: str, out: Path, name: str | None, variant: str = "self-instruct") -> tuple[str, Path]:
    """`--extend DATASET` (NAME under OUT, or a dataset folder): the (name, store folder) the run publishes
    into. It must hold a published Self-Instruct version of the same variant; `--name`, if given, must
    name the same dataset."""
    import json

    from datagen.store.refs import resolve_dataset

    try:
        store = resolve_dataset(spec, out)
        vdir = store.resolve(None)
    except DatagenError as e:
        raise DatagenError(f"--extend: {e}") from None
    if name is not None and name != store.name:
        raise DatagenError(f"--name / --extend: --extend {spec} publishes into dataset '{store.name}'; drop --name "
                           f"or give --name {store.name}")
    try:
        made_by, was, _ = generated_by(store.root, f"{store.name}@{vdir.name}")
    except DatagenError as e:
        raise DatagenError(f"--extend: {e}") from None
    if made_by != "self-instruct":
        raise DatagenError(f"--extend: {store.name}@{vdir.name} was made by '{made_by}', not self-instruct; "
                           "only a self-instruct dataset grows by new instructions")
    was = was or "self-instruct"
    if was != variant:
        raise DatagenError(f"--extend: {store.name}@{vdir.name} is the {was} variant; give --variant {was}")
    if not (vdir / "records.jsonl").is_file():
        raise DatagenError(f"--extend: {vdir / 'records.jsonl'}: missing (the records to continue from)")
    return store.name, store.root


# Versions that rework their parent's records (dedup, filter, translate) rather than generate: a dataset
# whose LATEST is one of them was generated by the recipe its parent chain leads to.
REWORKING = ("dedup", "filter", "translate")


def generated_by(root: Path, label: str) -> tuple[str | None, str | None, list[str]]:
    """(recipe, variant, chain of NAME@vN) that generated the records of version `label` under `root`,
    following `parent` through dedup / filter / translate versions."""
    import json

    from datagen.store.versions import DatasetStore

    chain: list[str] = []
    while True:
        name, _, version = label.partition("@")
        vdir = DatasetStore(root, name).resolve(version or None)
        chain.append(f"{name}@{vdir.name}")
        try:
            manifest = json.loads((vdir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DatagenError(f"{vdir / 'manifest.json'}: cannot read ({e})") from None
        recipe, parent = manifest.get("recipe"), manifest.get("parent")
        if recipe not in REWORKING or not isinstance(parent, str) or len(chain) > 1000:
            return recipe, (manifest.get("config") or {}).get("variant"), chain
        label = parent


EVOL_FLAGS = {"rounds": "--rounds", "seed": "--seed", "weights": "--weights", "max_tokens": "--max-tokens",
              "prompts_dir": "--prompts"}
DISTILL_FLAGS = {"turns": "--turns", "samples": "--samples", "system": "--system", "seed": "--seed",
                 "max_tokens": "--max-tokens", "prompts_dir": "--prompts"}
JUDGE_FLAGS = {"mode": "--judge", "min_score": "--judge-min-score"}


def parse_weights(text: str | None) -> dict[str, float] | None:
    """`--weights breadth=2,deepening=0.5` -> {op: weight}; an unknown op or a bad number names itself."""
    from datagen.methods.evol import OPERATIONS

    if text is None:
        return None
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        op, eq, value = part.partition("=")
        op = op.strip().replace("-", "_")
        if not eq:
            raise DatagenError(f"--weights: expected op=weight pairs such as breadth=2,deepening=1, got '{part}'")
        if op not in OPERATIONS:
            raise DatagenError(f"--weights: unknown operation '{op}' (known: {', '.join(OPERATIONS)})")
        try:
            out[op] = float(value)
        except ValueError:
            raise DatagenError(f"--weights: {op}: expected a number, got '{value.strip()}'") from None
    return out


def _judging(flags: dict[str, Any], cfg: dict[str, Any], where: str, section: Any = None) -> dict[str, Any]:
    from datagen.methods.judge import JudgeParams
    return resolve_section(JudgeParams, flags, cfg.get("judging") if section is None else section, "judging",
                           JUDGE_FLAGS, where)


def recipe_run(recipe: str, *, input: str, name: str, out: Path, cfg: dict[str, Any], config_path: Path | None,
               teacher_flags: dict[str, Any], judge_flags: dict[str, Any], params: dict[str, Any],
               judging: dict[str, Any], cache: Path | None = None, max_cost: float | None = None,
               max_total_tokens: int | None = None):
    """The run of a recipe that starts from instructions (`evol` or `distill`): the common checks, the
    method's typed settings (flags > YAML section > defaults), its templates, the input and the judge."""
    from datagen.methods.distill import DistillParams, DistillTemplates
    from datagen.methods.evol import EvolParams, EvolTemplates
    from datagen.methods.judge import JudgeTemplates
    from datagen.store.sources import load_instructions

    cls, templates, flag_names = {"evol": (EvolParams, EvolTemplates, EVOL_FLAGS),
                                  "distill": (DistillParams, DistillTemplates, DISTILL_FLAGS)}[recipe]
    run, teacher_cfg = base_run(name=name, out=out, cfg=cfg, config_path=config_path, teacher_flags=teacher_flags,
                                judge_flags=judge_flags, cache=cache, max_cost=max_cost,
                                max_total_tokens=max_total_tokens)
    where = str(config_path or "config")
    merged = resolve_section(cls, params, cfg.get(recipe), recipe, flag_names, where)
    templates.load(merged["prompts_dir"])
    JudgeTemplates.load(merged["prompts_dir"])
    load_instructions(input, out)
    run.update({"input": _input_spec(input), recipe: merged, "judging": _judging(judging, cfg, where)})
    return run, teacher_cfg


def _input_spec(spec: str) -> str:
    """A file or folder is passed on as an absolute path (the flow may run elsewhere); a dataset name as is."""
    p = Path(spec)
    return str(p.resolve()) if p.exists() else spec


PIPELINE_STAGES = ("self_instruct", "evol", "answer", "judge", "dedup", "filters", "translate", "publish")
TRANSLATE_FLAGS = {"languages": "--translate", "seed": "--seed", "max_tokens": "--max-tokens", "prompts_dir": "--prompts"}


def add_translation(run: dict[str, Any], *, cfg: dict[str, Any], config_path: Path | None, teacher_cfg: Any,
                    languages: str | None, translator_flags: dict[str, Any] | None = None,
                    flags: dict[str, Any] | None = None, flag: str = "--translate") -> None:
    """The run's translation (`--translate zh,fr` / `translate:` / a pipeline's translate stage) and the
    translator role (`--translator-base-url/--translator-model` > DATAGEN_TRANSLATOR_* > `translator:`),
    checked now: an unknown language code names the flag or field. No languages: no translation."""
    from datagen.methods.translate import TranslateTemplates, parse_languages
    from datagen.teacher.config import resolve_role_config

    where = str(config_path or "config")
    stage = run.pop("translate_stage", None)     # a pipeline's `translate` stage stands for the section
    section, section_name = (stage["params"], stage["where"]) if stage else (cfg.get("translate"), "translate")
    if isinstance(section, (list, str)):
        section = {"languages": section}
    if section is not None and not isinstance(section, dict):
        raise DatagenError(f"{where}: {section_name}: expected a mapping of settings, e.g. {{languages: [zh, fr]}}")
    section = dict(section or {})
    if "languages" in section:
        section["languages"] = parse_languages(section["languages"], f"{where}: {section_name}.languages")
    given = {**(flags or {}), "languages": parse_languages(languages, flag) or None}
    names = {**TRANSLATE_FLAGS, "languages": flag}
    merged = resolve_section(_translate_params(), given, section, section_name, names, where)
    translator_flags = {k: v for k, v in (translator_flags or {}).items() if v is not None}
    if merged["languages"]:
        resolve_role_config("translator", translator_flags, cfg.get("translator"), teacher_cfg, where=where)
    if stage and not merged["languages"]:
        raise DatagenError(f"{where}: {section_name}: languages: required, e.g. {{translate: {{languages: [zh, fr]}}}}")
    if merged["languages"]:
        TranslateTemplates.load(merged["prompts_dir"])
    run.update({"translate": merged if merged["languages"] else None, "translator": translator_flags,
                "translator_yaml": cfg.get("translator") or {}})


def _translate_params():
    from datagen.methods.translate import TranslateParams
    return TranslateParams


def pipeline_run(*, config_path: Path, cfg: dict[str, Any], out: Path, name: str | None,
                 teacher_flags: dict[str, Any], judge_flags: dict[str, Any], cache: Path | None = None,
                 max_cost: float | None = None, max_total_tokens: int | None = None):
    """A pipeline config: `name`, optional `input`, `stages` (a list of one-key mappings, in order), and
    the usual teacher / judge / prices / budget sections. Every stage's settings are checked now."""
    from datagen.methods.curate import build_chain
    from datagen.methods.distill import DistillParams, DistillTemplates
    from datagen.methods.evol import EvolParams, EvolTemplates
    from datagen.methods.judge import JudgeParams, JudgeTemplates
    from datagen.store.seeds import load_seeds
    from datagen.store.sources import load_instructions

    where = str(config_path)
    allowed = {"teacher", "judge", "translator", "prices", "budget", *PIPELINE_KEYS}
    name = name or cfg.get("name") or config_path.stem
    if not isinstance(name, str):
        raise DatagenError(f"{where}: name: expected a dataset name, got {name!r}")
    run, teacher_cfg = base_run(name=name, out=out, cfg=cfg, config_path=config_path, teacher_flags=teacher_flags,
                                judge_flags=judge_flags, cache=cache, max_cost=max_cost,
                                max_total_tokens=max_total_tokens, allowed=allowed)
    base = config_path.resolve().parent
    stages_spec = cfg.get("stages")
    if not isinstance(stages_spec, list) or not stages_spec:
        raise DatagenError(f"{where}: stages: expected a list of stages, e.g. [{{evol: {{rounds: 4}}}}, answer, judge]")
    stages: list[dict[str, Any]] = []
    for i, item in enumerate(stages_spec, 1):
        at = f"{where}: stages[{i}]"
        if isinstance(item, str):
            kind, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            kind, params = next(iter(item.items()))
        else:
            raise DatagenError(f"{at}: expected a stage name or {{name: {{settings}}}}, got {item!r}")
        if kind not in PIPELINE_STAGES:
            raise DatagenError(f"{at}: unknown stage '{kind}' (known: {', '.join(PIPELINE_STAGES)})")
        if kind == "translate":
            if any((s if isinstance(s, str) else next(iter(s), None)) != "publish" for s in stages_spec[i:]):
                raise DatagenError(f"{at}: translate must be the last stage before publish (it translates the "
                                   "records the run publishes)")
            run["translate_stage"] = {"params": params, "where": f"stages[{i}].translate"}
            continue
        if kind == "publish":
            if i != len(stages_spec):
                raise DatagenError(f"{at}: publish must be the last stage (the version is published once, at the end)")
            continue
        if kind in ("dedup", "filters"):
            chain = params if isinstance(params, list) else (params or {}).get("steps")
            if not isinstance(chain, list):
                raise DatagenError(f"{at}: {kind}: expected a list of steps, e.g. [exact_dedup, {{rouge: {{threshold: 0.7}}}}]")
            build_chain(chain, base, where=f"{at} {kind}")
            stages.append({"kind": "curate", "chain": chain, "where": f"{at} {kind}"})
            continue
        params = dict(params or {})
        if not isinstance(params, dict):
            raise DatagenError(f"{at}: {kind}: settings must be a mapping")
        if kind == "self_instruct":
            if i != 1:
                raise DatagenError(f"{at}: self_instruct makes new instructions from seeds; it must be the first stage")
            seeds = params.pop("seeds", None)
            variant = params.pop("variant", "self-instruct")
            if not isinstance(seeds, str):
                raise DatagenError(f"{at}: self_instruct: seeds: expected the path of a seed file")
            seeds_path = (base / seeds) if not Path(seeds).is_absolute() else Path(seeds)
            if not seeds_path.exists() and Path(seeds).exists():
                seeds_path = Path(seeds)
            load_seeds(seeds_path)
            if variant == "alpaca":
                from datagen.methods.alpaca import AlpacaParams
                merged = resolve_section(AlpacaParams, {}, params, f"stages[{i}].self_instruct", {}, where)
            elif variant == "self-instruct":
                merged = resolve_self_instruct_params({}, params, where=f"{at}", env={})
            else:
                raise DatagenError(f"{at}: self_instruct: variant: expected self-instruct or alpaca, got {variant!r}")
            stages.append({"kind": "self_instruct", "seeds": str(seeds_path.resolve()), "params": merged,
                           "variant": variant if variant == "alpaca" else None})
        elif kind == "evol":
            if "weights" in params and isinstance(params["weights"], str):
                params["weights"] = parse_weights(params["weights"])
            merged = resolve_section(EvolParams, {}, params, f"stages[{i}].evol", {}, where)
            EvolTemplates.load(merged["prompts_dir"])
            JudgeTemplates.load(merged["prompts_dir"])
            stages.append({"kind": "evol", "params": merged})
        elif kind == "answer":
            merged = resolve_section(DistillParams, {}, params, f"stages[{i}].answer", {}, where)
            DistillTemplates.load(merged["prompts_dir"])
            stages.append({"kind": "answer", "params": merged})
        elif kind == "judge":
            seed = params.pop("seed", 42)
            merged = resolve_section(JudgeParams, {}, params, f"stages[{i}].judge", {}, where)
            stages.append({"kind": "judge", "params": merged, "seed": seed})
    input_spec = cfg.get("input")
    if stages and stages[0]["kind"] != "self_instruct":
        if not input_spec:
            raise DatagenError(f"{where}: input: required unless the first stage is self_instruct "
                               "(a dataset name[@vN], a seed file, Alpaca JSON/JSONL or a .txt of instructions)")
        if not isinstance(input_spec, str):
            raise DatagenError(f"{where}: input: expected a dataset name or a file path, got {input_spec!r}")
        candidate = base / input_spec
        input_spec = str(candidate.resolve()) if candidate.exists() else input_spec
        load_instructions(input_spec, out, flag=f"{where}: input")
    elif input_spec:
        raise DatagenError(f"{where}: input: not used when the first stage is self_instruct (it starts from its seeds)")
    if not stages:
        raise DatagenError(f"{where}: stages: nothing to run before publish")
    run.update({"input": input_spec if stages[0]["kind"] != "self_instruct" else None, "stages": stages,
                "config_path": where, "config_base": str(base)})
    return run, teacher_cfg


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class RunnerSpec:
    """Where a run's teacher requests are sent from (run["runner"]; absent means local): this process,
    or the workers of a Dask cluster — an existing scheduler at `address`, or a LocalCluster of
    `workers` processes the flow starts and stops (datagen/flows/dask_runner.py)."""
    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    threads: int | None = None      # per LocalCluster worker: batches it runs at once (I/O, not CPU)

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> "RunnerSpec":
        return cls(**(run.get("runner") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "workers": self.workers, "threads": self.threads}


def runner_spec(kind: str, address: str | None, workers: int | None, teacher_cfg: Any) -> RunnerSpec:
    """--runner / --dask-address / --dask-workers, checked against each other and the teacher."""
    from urllib.parse import urlsplit

    if kind not in ("local", "dask"):
        raise DatagenError(f"--runner: expected local or dask, got '{kind}'")
    if kind == "local":
        for flag, value in (("--dask-address", address), ("--dask-workers", workers)):
            if value is not None:
                raise DatagenError(f"{flag}: only with --runner dask")
        return RunnerSpec()
    if address is not None and workers is not None:
        raise DatagenError("--dask-workers: sizes the LocalCluster datagen starts when no --dask-address is given; "
                           "a cluster at --dask-address has its own workers: drop one of them")
    if address is not None:
        try:
            u = urlsplit(address)
            ok = u.scheme in ("tcp", "tls") and bool(u.hostname) and u.port is not None
        except ValueError:
            ok = False
        if not ok:
            raise DatagenError(f"--dask-address: expected tcp://HOST:PORT (a Dask scheduler), got '{address}'")
        if teacher_cfg.embedded and u.hostname not in LOOPBACK:
            raise DatagenError("--dask-address: the embedded teacher listens on 127.0.0.1 of this machine, which a "
                               f"cluster at {u.hostname} cannot reach: give the teacher an endpoint the workers "
                               "reach (--base-url), or drop --dask-address for a LocalCluster here")
    if teacher_cfg.batch_api:
        raise DatagenError("--batch-api: not with --runner dask (the provider's batch queue is polled from this "
                           "process; the workers would only wait on it): pick one")
    if address is not None:
        return RunnerSpec(kind="dask", address=address)
    # A worker thread runs one batch (a Prefect task run) at a time; the driver keeps two batches per
    # worker in flight (one on the wire, one starting: its Prefect overhead overlaps the other's wait).
    return RunnerSpec(kind="dask", workers=workers or 2, threads=2)


def check_scheduler(run: dict[str, Any], timeout_s: float = 5.0) -> None:
    """A scheduler at the run's --dask-address answers on its port, before anything starts (exit 1)."""
    import socket
    from urllib.parse import urlsplit

    from datagen.errors import ClusterUnavailable

    address = (run.get("runner") or {}).get("address")
    if not address:
        return
    u = urlsplit(address)
    try:
        socket.create_connection((u.hostname, u.port), timeout=timeout_s).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        raise ClusterUnavailable(f"--dask-address: no Dask scheduler answers at {u.hostname}:{u.port} ({reason}); "
                                 "is the cluster up (dask scheduler / dask worker)?") from None
