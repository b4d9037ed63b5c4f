"""Every setting resolves as: flag given > environment > YAML --config > default, through the real CLI
(`--dry-run` prints the settings the run would use, and calls nothing)."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO
from datagen.cli import app

# setting: (default, yaml, env, flag value or None where the setting has no flag), flag name
SELF_INSTRUCT = {
    "num_instructions": ((10, 11, 12, 13), "--num-instructions"),
    "prompt_instructions": ((8, 7, 6, None), None),
    "machine_in_prompt": ((2, 1, 0, None), None),
    "prompts_per_round": ((8, 4, 3, 2), "--prompts-per-round"),
    "max_stalled_rounds": ((5, 6, 7, None), None),
    "rouge_threshold": ((0.7, 0.6, 0.5, None), None),
    "rouge_tokenizer": (("rouge_score", "unicode", "rouge_score", "unicode"), "--rouge-tokenizer"),
    "max_instances": ((5, 4, 3, None), None),
    "seed": ((42, 1, 2, 3), "--seed"),
    "max_tokens": ((None, 100, 200, 300), "--max-tokens"),
    "prompts_dir": ((None, "p1", "p2", "p3"), "--prompts"),
}
TEACHER = {   # setting: (default, yaml, env, flag value), the flag's arguments for that value, env variable
    "model": ((None, "from-yaml", "from-env", "from-flag"), lambda v: ["--model", v], "DATAGEN_MODEL"),
    "api": (("completions", "chat", "completions", "chat"), lambda v: ["--api", v], "DATAGEN_API"),
    "max_concurrency": ((8, 3, 5, 7), lambda v: ["--max-concurrency", str(v)], "DATAGEN_MAX_CONCURRENCY"),
    "rpm": ((None, 100.0, 200.0, 300.0), lambda v: ["--rpm", str(v)], "DATAGEN_RPM"),
    "tpm": ((None, 1000.0, 2000.0, 3000.0), lambda v: ["--tpm", str(v)], "DATAGEN_TPM"),
    "timeout_s": ((120.0, 30.0, 40.0, None), None, "DATAGEN_TIMEOUT_S"),
    "max_retries": ((6, 2, 3, None), None, "DATAGEN_MAX_RETRIES"),
    "cache_mode": (("use", "refresh", "off", "refresh"), lambda v: ["--refresh"], "DATAGEN_CACHE_MODE"),
}


def _settings(tmp_path, args: list[str], yaml_cfg: dict | None, env: dict[str, str]) -> dict:
    cmd = ["run", "self-instruct", "--seeds", str(REPO / "seeds" / "175.jsonl"), "--out", str(tmp_path / "out"),
           "--dry-run", *args]
    if yaml_cfg is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(yaml_cfg))
        cmd += ["--config", str(path)]
    clean = {k: None for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DATAGEN_BASE_URL", "DATAGEN_API_KEY",
                               *(TEACHER[n][2] for n in TEACHER), *(f"DATAGEN_{n.upper()}" for n in SELF_INSTRUCT))}
    result = CliRunner().invoke(app, cmd, env={**clean, **env}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["settings"]


def _value(tmp_path, name: str, v):
    if name == "prompts_dir" and v is not None:
        folder = tmp_path / v
        if not folder.exists():
            shutil.copytree(REPO / "prompts", folder)
        return str(folder)
    return v


@pytest.mark.parametrize("name", sorted(SELF_INSTRUCT))
def test_self_instruct_setting_walks_all_four_levels(tmp_path, name):
    (default, in_yaml, in_env, in_flag), flag = SELF_INSTRUCT[name]
    y, e, f = (_value(tmp_path, name, v) for v in (in_yaml, in_env, in_flag))
    env_name = f"DATAGEN_{name.upper()}"
    got = lambda *a: _settings(tmp_path, *a)["self_instruct"][name]
    assert got([], None, {}) == default
    assert got([], {"self_instruct": {name: y}}, {}) == y
    assert got([], {"self_instruct": {name: y}}, {env_name: str(e)}) == e
    if flag:
        assert got([flag, str(f)], {"self_instruct": {name: y}}, {env_name: str(e)}) == f


@pytest.mark.parametrize("name", sorted(TEACHER))
def test_teacher_setting_walks_all_four_levels(tmp_path, name):
    (default, y, e, f), flag_args, env_name = TEACHER[name]
    base = ["--base-url", "http://127.0.0.1:9/v1"] + (["--model", "m"] if name != "model" else [])
    got = lambda args, cfg, env: _settings(tmp_path, base + args, cfg, env)["teacher"][name]
    if name != "model":            # an endpoint needs a model: the default case is the embedded teacher
        assert got([], None, {}) == default
    assert got([], {"teacher": {name: y}}, {}) == y
    assert got([], {"teacher": {name: y}}, {env_name: str(e)}) == e
    if flag_args:
        assert got(flag_args(f), {"teacher": {name: y}}, {env_name: str(e)}) == f


def test_yaml_setting_is_not_overridden_by_a_flag_default(tmp_path):
    """The reported case: prompts_per_round: 4 in --config was ignored because the flag's default won."""
    s = _settings(tmp_path, [], {"self_instruct": {"prompts_per_round": 4}, "teacher": {"max_concurrency": 3}}, {})
    assert s["self_instruct"]["prompts_per_round"] == 4
    assert s["teacher"]["max_concurrency"] == 3
    s = _settings(tmp_path, ["--max-concurrency", "5"], {"teacher": {"max_concurrency": 3}}, {})
    assert s["teacher"]["max_concurrency"] == 5


def _manifest(folder, **fields):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(fields))


def test_assume_from_a_filter_version_takes_the_yields_of_the_run_that_made_the_data(tmp_path):
    out = tmp_path / "out"
    kinds = {"bootstrap": {"requests": 10, "completion_tokens": 3000, "prompt_tokens": 9000, "estimated_prompt_tokens": 9000},
             "instances": {"requests": 40, "completion_tokens": 8000, "prompt_tokens": 8000, "estimated_prompt_tokens": 8000},
             "classify": {"requests": 40, "completion_tokens": 40, "prompt_tokens": 4000, "estimated_prompt_tokens": 4000}}
    _manifest(out / "x" / "v0001", recipe="self-instruct", dataset="x", version="v0001", usage=[{"by_kind": kinds}],
              counts={"bootstrap.prompts": 10, "bootstrap.accepted": 60, "instructions": 30,
                      "classify.yes": 10, "classify.no": 30}, rejected={})
    _manifest(out / "x" / "v0002", recipe="dedup", dataset="x", version="v0002", parent="x@v0001", counts={}, rejected={})
    (out / "x" / "LATEST").write_text("v0002\n")

    def estimate(*args):
        cmd = ["run", "self-instruct", "--seeds", str(REPO / "seeds" / "175.jsonl"), "--out", str(out), "--dry-run",
               "-n", "100", *args]
        result = CliRunner().invoke(app, cmd, env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1]), result.output

    via_child, text = estimate("--assume-from", "x")
    direct, _ = estimate("--assume-from", "x@v0001")
    defaults, _ = estimate()
    assert via_child["requests"] == direct["requests"] and via_child["output_tokens"] == direct["output_tokens"]
    assert via_child["output_tokens"] != defaults["output_tokens"]
    assert "x@v0002 <- x@v0001" in text


def test_assume_from_a_version_with_no_generating_parent_is_an_error(tmp_path):
    out = tmp_path / "out"
    _manifest(out / "y" / "v0001", recipe="dedup", dataset="y", version="v0001", counts={}, rejected={})
    (out / "y" / "LATEST").write_text("v0001\n")
    result = CliRunner().invoke(app, ["run", "self-instruct", "--seeds", str(REPO / "seeds" / "175.jsonl"), "--out",
                                      str(out), "--dry-run", "--assume-from", "y"], env={"OPENAI_BASE_URL": None})
    assert result.exit_code != 0
    assert "was made by 'dedup' and names no parent" in str(result.exception)


def test_no_cache_and_refresh_flags(tmp_path):
    base = ["--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    assert _settings(tmp_path, base + ["--no-cache"], None, {})["teacher"]["cache_mode"] == "off"
    assert _settings(tmp_path, base + ["--refresh"], None, {})["teacher"]["cache_mode"] == "refresh"
    cmd = ["run", "self-instruct", "--seeds", str(REPO / "seeds" / "175.jsonl"), "--dry-run", "--refresh", "--no-cache"]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code != 0 and "pick one" in str(result.exception)
