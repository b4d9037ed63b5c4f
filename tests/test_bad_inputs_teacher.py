"""Bad teacher settings through the real CLI: each gives exactly one `error:` line naming the setting
and where it came from (flag, environment variable, `file: teacher.field`), the right exit code, no
traceback, and nothing published. These all stop before Prefect starts, except the two marked slow."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli
from openai_stub import StubConfig, StubServer

SEEDS = ["--seeds", "seeds/175.jsonl"]
FAST = "  max_retries: 1\n  backoff_base_s: 0.01\n"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DATAGEN_"))}
    return {**env, **extra}


def _yaml(tmp: Path, teacher: str) -> list[str]:
    path = tmp / "t.yaml"
    path.write_text("teacher:\n" + teacher)
    return ["--config", str(path)]


def _flag(*args: str):
    return lambda tmp: ([*args], {})


def _conf(teacher: str, *args: str):
    return lambda tmp: ([*_yaml(tmp, teacher), *args], {})


def _env(**env: str):
    return lambda tmp: ([], env)


# name -> (builder(tmp) -> (extra args, extra env), fragment of the error line, exit code)
CASES = {
    # item 11: the base URL is parsed whole, where it is given
    "ipv6_unclosed_flag": (_flag("--base-url", "http://[::1", "--model", "m"),
                           "--base-url: expected http(s)://host[:port]/v1, got 'http://[::1'", 2),
    "ipv6_unclosed_env": (_env(OPENAI_BASE_URL="http://[::1", DATAGEN_MODEL="m"),
                          "OPENAI_BASE_URL in the environment: expected http(s)://", 2),
    "port_out_of_range": (_flag("--base-url", "http://127.0.0.1:99999/v1", "--model", "m"),
                          "the port must be a number from 1 to 65535", 2),
    "port_not_a_number": (_flag("--base-url", "http://127.0.0.1:80a/v1", "--model", "m"),
                          "the port must be a number from 1 to 65535", 2),
    "url_with_query": (_flag("--base-url", "http://127.0.0.1:8000/v1?key=abc", "--model", "m"),
                       "a base URL has no ?query or #fragment", 2),
    "url_not_http_yaml": (_conf("  base_url: ftp://example.com/v1\n  model: m\n"),
                          "t.yaml: teacher.base_url: expected http(s)://host[:port]/v1, got 'ftp://example.com/v1'", 2),
    "url_no_host_env": (_env(DATAGEN_BASE_URL="http://:8000/v1", DATAGEN_MODEL="m"),
                        "DATAGEN_BASE_URL in the environment: expected http(s)://host[:port]/v1, got "
                        "'http://:8000/v1' (no host)", 2),
    # numeric settings: range, with the setting named
    "timeout_zero": (_conf("  timeout_s: 0\n"), "t.yaml: teacher.timeout_s: must be more than 0", 2),
    "timeout_string": (_conf("  timeout_s: fast\n"),
                       "t.yaml: teacher.timeout_s: expected a number (seconds), got 'fast' (a string)", 2),
    "timeout_quoted_number": (_conf("  timeout_s: \"120\"\n"), "got '120' (a string)", 2),
    "timeout_null": (_conf("  timeout_s:\n"), "t.yaml: teacher.timeout_s: expected a number (seconds), got nothing", 2),
    "timeout_in_ms_by_mistake": (_conf("  timeout_s: 120000\n"), "t.yaml: teacher.timeout_s: must be more than 0 "
                                 "and at most 86400", 2),
    "concurrency_zero": (_conf("  max_concurrency: 0\n"), "t.yaml: teacher.max_concurrency: must be at least 1", 2),
    "concurrency_fraction": (_conf("  max_concurrency: 2.5\n"),
                             "t.yaml: teacher.max_concurrency: expected a whole number", 2),
    "concurrency_list": (_conf("  max_concurrency: [8]\n"), "got [8] (a list)", 2),
    "retries_negative": (_conf("  max_retries: -1\n"), "t.yaml: teacher.max_retries: must be at least 0", 2),
    "retries_boolean": (_conf("  max_retries: yes\n"), "t.yaml: teacher.max_retries: expected a whole number", 2),
    "backoff_negative": (_conf("  backoff_base_s: -0.5\n"), "t.yaml: teacher.backoff_base_s: must be at least 0", 2),
    "backoff_max_below_base": (_conf("  backoff_base_s: 2\n  backoff_max_s: 1\n"),
                               "t.yaml: teacher.backoff_max_s: must be at least backoff_base_s (2), got 1", 2),
    "rpm_zero": (_conf("  rpm: 0\n"), "t.yaml: teacher.rpm: must be more than 0", 2),
    "tpm_string": (_conf("  tpm: lots\n"), "t.yaml: teacher.tpm: expected a number", 2),
    "rate_window_infinite": (_conf("  rate_window_s: .inf\n"), "t.yaml: teacher.rate_window_s: must be more than 0", 2),
    "batch_poll_negative": (_conf("  batch_poll_s: -1\n"), "t.yaml: teacher.batch_poll_s: must be more than 0", 2),
    "batch_api_string": (_conf("  batch_api: \"yes please\"\n"),
                         "t.yaml: teacher.batch_api: expected true or false", 2),
    "model_number": (_conf("  model: 7\n"), "t.yaml: teacher.model: expected a model name (quote it in YAML)", 2),
    "cache_mode_unknown": (_conf("  cache_mode: sometimes\n"),
                           "t.yaml: teacher.cache_mode: expected one of use, refresh, off, got 'sometimes'", 2),
    "env_timeout_not_a_number": (_env(DATAGEN_TIMEOUT_S="soon"),
                                 "DATAGEN_TIMEOUT_S in the environment: expected a number, got 'soon'", 2),
    "env_concurrency_zero": (_env(DATAGEN_MAX_CONCURRENCY="0"),
                             "DATAGEN_MAX_CONCURRENCY in the environment: must be at least 1", 2),
    "env_beats_yaml_and_is_named": (lambda tmp: (_yaml(tmp, "  max_retries: 3\n"), {"DATAGEN_MAX_RETRIES": "-2"}),
                                    "DATAGEN_MAX_RETRIES in the environment: must be at least 0", 2),
    # item 16: an endpoint that stays down is named by where its URL came from
    "unreachable_from_env": (lambda tmp: (_yaml(tmp, FAST), {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                                                               "DATAGEN_MODEL": "m"}),
                             "is the server running at http://127.0.0.1:9/v1 (OPENAI_BASE_URL in the environment)", 1),
}


def _assert_one_error_line(proc, expected: str, code: int, out: Path) -> str:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(("error:", "Error:")) or "Invalid value" in ln]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-1500:])
    assert len(errors) == 1, proc.stderr[-1500:]
    assert expected in errors[0], errors[0]
    assert not any(out.glob("*/v0*")), "something was published"
    return errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_teacher_setting_gives_one_clear_line(tmp_path, case):
    build, expected, code = CASES[case]
    args, env = build(tmp_path)
    out = tmp_path / "out"
    proc = run_cli(["run", "self-instruct", *SEEDS, "--out", str(out), *args], env=_clean_env(**env))
    line = _assert_one_error_line(proc, expected, code, out)
    if "in the environment" in expected:
        assert "--base-url" not in line          # the user never typed it


def test_html_teacher_fails_at_preflight_with_the_start_of_the_page(tmp_path):
    page = "<!doctype html><html><head><title>Captive portal</title></head><body>" + "Sign in to continue. " * 20
    with StubServer(StubConfig(html_page=page)) as srv:
        proc = run_cli(["run", "self-instruct", *SEEDS, "--out", str(tmp_path / "out"), "--base-url", srv.base_url,
                        "--model", "m"], env=_clean_env())
        assert len(srv.requests) == 1                         # one look, no six retries
    line = _assert_one_error_line(proc, "answered HTTP 200 with an HTML page", 2, tmp_path / "out")
    assert f"{srv.base_url}/models" in line and " ".join(page[:200].split()) in line


@pytest.mark.slow
@pytest.mark.parametrize("source", ["flag", "env"])
def test_base_url_typo_shows_the_full_url_requested(tmp_path, prefect_env, source):
    with StubServer() as srv:
        typo = srv.url + "/vl"
        env = {k: v for k, v in prefect_env.items() if not k.startswith("DATAGEN_")}
        args = ["run", "self-instruct", *SEEDS, "--out", str(tmp_path / "out"), "--model", "m",
                "--num-instructions", "1"]
        if source == "flag":
            args += ["--base-url", typo]
        else:
            env["OPENAI_BASE_URL"] = typo
        proc = run_cli(args, env=env)
    line = _assert_one_error_line(proc, f"teacher at {typo}/completions: HTTP 404", 2, tmp_path / "out")
    assert ("check --base-url" in line) == (source == "flag")
    assert ("OPENAI_BASE_URL in the environment" in line) == (source == "env")
