"""The bad-input corpus: each mistake gives one clear `error:` line, the right exit code, and
publishes nothing (exit 2 for input a user can fix, 1 for an endpoint that stays down)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from openai_stub import StubConfig, StubServer

GOOD = '{"id": "a", "instruction": "Name three colours of the rainbow.", "instances": [{"input": "", "output": "red"}]}\n'


def _write(tmp: Path, name: str, data: bytes | str) -> Path:
    p = tmp / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def _seed_case(name, content):
    return lambda tmp: ["--seeds", str(_write(tmp, name, content))]


def _config_case(text):
    return lambda tmp: ["--seeds", "seeds/175.jsonl", "--config", str(_write(tmp, "c.yaml", text))]


# name -> (args builder, expected fragment of the error line, exit code)
CASES = {
    "invalid_json": (_seed_case("s.jsonl", GOOD + '{"instruction": "x",\n'), "s.jsonl:2: invalid JSON", 2),
    "missing_field": (_seed_case("s.jsonl", GOOD + '{"id": "b"}\n'), "s.jsonl:2: field 'instruction' is missing", 2),
    "mistyped_field": (_seed_case("s.jsonl", '{"instruction": ["a", "b"]}\n'), "s.jsonl:1: field 'instruction' must be a string", 2),
    "mistyped_instances": (_seed_case("s.jsonl", '{"instruction": "Say hi", "instances": "none"}\n'), "field 'instances' must be a list", 2),
    "missing_output": (_seed_case("s.jsonl", '{"instruction": "Say hi", "instances": [{"input": "x"}]}\n'), "field 'output' is missing", 2),
    "empty_file": (_seed_case("s.jsonl", ""), "the seed file is empty", 2),
    "non_utf8": (_seed_case("s.jsonl", GOOD.encode() + b'{"instruction": "caf\xe9"}\n'), "s.jsonl:2: not UTF-8", 2),
    "huge_line": (_seed_case("s.jsonl", '{"instruction": "' + "x" * (100 << 20) + '"}\n'), "s.jsonl:1: line is 104.9 MB", 2),
    "duplicate_ids": (_seed_case("s.jsonl", GOOD + GOOD), "s.jsonl:2: field 'id' duplicates 'a'", 2),
    "unknown_format": (_seed_case("s.parquet", "PAR1"), "unknown seed format '.parquet'", 2),
    "json_not_array": (_seed_case("s.json", '{"instruction": "x"}'), "expected a JSON array", 2),
    "missing_file": (lambda tmp: ["--seeds", str(tmp / "nope.jsonl")], "seed file not found", 2),
    "seeds_is_folder": (lambda tmp: ["--seeds", str(tmp)], "is a folder", 2),
    "bad_yaml": (_config_case("teacher:\n  model: [unclosed\n"), "c.yaml:3: invalid YAML", 2),
    "yaml_unknown_key": (_config_case("teachr: {}\n"), "unknown top-level setting 'teachr'", 2),
    "yaml_key_in_file": (_config_case("teacher:\n  api_key: sk-123\n"), "c.yaml: teacher.api_key must not be written in a config file", 2),
    "yaml_bad_param": (_config_case("self_instruct:\n  rounds: 3\n"), "unknown self_instruct setting 'rounds'", 2),
    "bad_api_value": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--api", "grpc"], "'grpc' is not one of", 2),
    "zero_target": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--num-instructions", "0"], "--num-instructions", 2),
    "bad_tokenizer": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--rouge-tokenizer", "klingon"], "'klingon' is not one of", 2),
    "bad_base_url": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--base-url", "localhost:8000", "--model", "m"], "--base-url: expected http(s)://", 2),
    "url_without_model": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--base-url", "http://127.0.0.1:9/v1"], "--model: required", 2),
    "name_escapes": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--name", "../../x"], "--name: '../../x' is not a valid dataset name", 2),
    "template_without_placeholder": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--prompts", str(_prompts(tmp))],
                                     "must contain the placeholder {{instructions}}", 2),
    "unreachable_endpoint": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                          "--config", str(_write(tmp, "f.yaml", "teacher: {max_retries: 2, backoff_base_s: 0.01}\n"))],
                             "unreachable after 2 retries", 1),
    "rouge_threshold_out_of_range": (_config_case("self_instruct:\n  rouge_threshold: -1\n"),
                                     "self_instruct.rouge_threshold: must be between 0.0 and 1.0, got -1", 2),
    "rouge_threshold_above_one": (_config_case("self_instruct:\n  rouge_threshold: 5\n"), "must be between 0.0 and 1.0", 2),
    "param_wrong_type": (_config_case("self_instruct:\n  prompts_per_round: many\n"),
                         "self_instruct.prompts_per_round: expected a whole number, got 'many'", 2),
    "machine_exceeds_prompt": (_config_case("self_instruct:\n  machine_in_prompt: 9\n"), "must not exceed prompt_instructions", 2),
    "self_instruct_not_mapping": (_config_case("self_instruct: [1, 2]\n"), "self_instruct: expected a mapping", 2),
    "out_is_a_file": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--out", str(_write(tmp, "f.txt", "x"))],
                      "is a file, not a folder", 2),
    "out_under_a_file": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--out", str(_write(tmp, "f.txt", "x") / "sub")],
                         "which is a file", 2),
    "out_under_proc": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--out", "/proc/datagen"], "kernel filesystem", 2),
    "cache_is_a_folder": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--cache", str(tmp)], "--cache:", 2),
    "template_unknown_placeholder": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--prompts",
                                                  str(_prompts(tmp, "Tasks:\n{{instructions}}\nfor {{audience}}\n"))],
                                     "bootstrap.txt:3: unknown placeholder {{audience}}", 2),
    "assume_from_without_dry_run": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--assume-from", "pilot"],
                                    "--assume-from: only used with --dry-run", 2),
    "assume_from_missing": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--dry-run", "--assume-from", "pilot"],
                            "no published version", 2),
    "max_tokens_zero": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--max-tokens", "0"], "--max-tokens", 2),
    "name_with_rich_markup": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--name", "[/x]"], "'[/x]' is not a valid dataset name", 2),
    "budget_wrong_type": (_config_case("budget: {max_cost_usd: lots}\n"), "budget.max_cost_usd: expected a non-negative number", 2),
    "budget_unknown_key": (_config_case("budget: {max_dollars: 3}\n"), "unknown budget setting 'max_dollars'", 2),
    "assumption_out_of_range": (_config_case("assumptions: {valid_instance_rate: 3}\n"), "assumptions.valid_instance_rate", 2),
    "name_not_ascii": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--name", "données"], "(ASCII letters A-Z a-z", 2),
    "lone_surrogate_seed": (_seed_case("s.jsonl", GOOD + '{"instruction": "Say \\ud800 hi", "instances": []}\n'),
                            "s.jsonl:2: field 'instruction' holds an unpaired surrogate", 2),
    "empty_model_flag": (lambda tmp: ["--seeds", str(_write(tmp, "ok.jsonl", '{"instruction": "Say \\ud83d\\ude00 hi"}\n')),
                                                   "--base-url", "http://127.0.0.1:9/v1", "--model", ""],
                                                   "--model: expected a model name, got", 2),
    "cache_not_sqlite": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--cache", "seeds/175.jsonl"],
                         "is not a datagen response cache", 2),
    "negative_cost": (lambda tmp: ["--seeds", "seeds/175.jsonl", "--max-cost", "-1"], "--max-cost", 2),
}


def _prompts(tmp: Path, bootstrap: str = "List tasks:\n{{instruction}}\n") -> Path:
    d = tmp / "prompts" / "self_instruct"
    d.mkdir(parents=True)
    for name in ("bootstrap", "classify", "instances_clf", "instances_gen"):
        (d / f"{name}.txt").write_text((REPO / "prompts" / "self_instruct" / f"{name}.txt").read_text())
    (d / "bootstrap.txt").write_text(bootstrap)
    return tmp / "prompts"


def _assert_one_error_line(proc, expected: str, code: int, out: Path) -> None:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:") or ln.startswith("Error:")
              or "Invalid value" in ln]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert expected in proc.stderr, proc.stderr[-1500:]
    assert len(errors) == 1, proc.stderr[-1500:]
    assert not (out / "x").exists() and not any(out.glob("*/v0*")), "something was published"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_line(tmp_path, case):
    build, expected, code = CASES[case]
    out = tmp_path / "out"
    proc = run_cli(["run", "self-instruct", "--out", str(out), *build(tmp_path)])
    _assert_one_error_line(proc, expected, code, out)


def test_wrong_api_key(tmp_path):
    with StubServer(StubConfig(require_api_key="sk-right")) as srv:
        proc = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--out", str(tmp_path / "out"),
                        "--base-url", srv.base_url, "--model", "stub"],
                       env={**__import__("os").environ, "OPENAI_API_KEY": "sk-wrong-key-7"})
    _assert_one_error_line(proc, "the API key was refused", 2, tmp_path / "out")
    assert "sk-wrong-key-7" not in proc.stderr


@pytest.mark.slow
def test_unknown_model(tmp_path, prefect_env):
    with StubServer(StubConfig(models=["real-model"])) as srv:
        proc = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--out", str(tmp_path / "out"),
                        "--base-url", srv.base_url, "--model", "no-such-model"], env=prefect_env)
    _assert_one_error_line(proc, "unknown model", 2, tmp_path / "out")


def test_user_template_cannot_reach_python_internals():
    from datagen.methods.templates import Template
    tpl = Template("t", Path("t.txt"), "A {{instruction}} {instruction.__class__.__mro__} {{instruction.__class__}} {0}")
    out = tpl.render(instruction="X")
    assert out == "A X {instruction.__class__.__mro__} {{instruction.__class__}} {0}"


def test_bad_inputs_cover_at_least_twenty_cases():
    assert len(CASES) + 2 >= 20
    json.dumps(sorted(CASES))


@pytest.mark.parametrize("args,expected", [
    (["--port", "70000"], "--port"),
    (["--port", "0"], "--port"),
    (["--port", "abc"], "--port"),
    (["--bogus"], "No such option"),
])
def test_teacher_serve_bad_flags(args, expected, tmp_path):
    proc = run_cli(["teacher", "serve", *args])
    _assert_one_error_line(proc, expected, 2, tmp_path / "out")


def test_teacher_serve_on_a_busy_port(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(["teacher", "serve", "--port", str(port)], timeout=60)
    _assert_one_error_line(proc, f"cannot listen on 127.0.0.1:{port}", 2, tmp_path / "out")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "99999"])
def test_bad_progress_interval_is_one_line_not_a_flood(value, tmp_path):
    import os
    env = {**os.environ, "DATAGEN_PROGRESS_INTERVAL_S": value}
    assert run_cli(["--version"], env=env).returncode == 0          # only a run reads it
    proc = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--out", str(tmp_path / "out"),
                    "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--config",
                    str(_write(tmp_path, "f.yaml", "teacher: {max_retries: 0}\n"))], env=env)
    _assert_one_error_line(proc, "DATAGEN_PROGRESS_INTERVAL_S: expected seconds between 0.1 and 3600", 2,
                           tmp_path / "out")


def test_paired_surrogate_escapes_are_valid_unicode(tmp_path):
    from datagen.store.seeds import load_seeds
    tasks = load_seeds(_write(tmp_path, "ok.jsonl", '{"instruction": "Say \\ud83d\\ude00 hi"}\n'))
    assert tasks[0].instruction == "Say \U0001F600 hi"
