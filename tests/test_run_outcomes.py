"""How a run that cannot reach its target ends: what is published, what the user is told."""
from __future__ import annotations

import json

import pytest

from conftest import cached_answers, interruptible, run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder

pytestmark = pytest.mark.slow


def _run(tmp_path, prefect_env, srv, *extra):
    return run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--out", str(tmp_path / "out"),
                    "--name", "r", "--base-url", srv.base_url, "--model", "stub",
                    "--cache", str(tmp_path / "c.sqlite"), *extra], env=prefect_env)


def test_a_budget_too_small_for_one_request_publishes_nothing(tmp_path, prefect_env):
    with StubServer(StubConfig(responder=responder)) as srv:
        p = _run(tmp_path, prefect_env, srv, "--max-total-tokens", "100")
        assert srv.requests_to("/v1/completions") == []
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "too small for a single request" in errors[0], p.stderr[-2000:]
    assert "--max-total-tokens 100" in errors[0] and "tokens (" in errors[0]
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out" / "r" / "LATEST").exists()
    assert not list((tmp_path / "out" / "r").glob("v0*"))
    assert not list((tmp_path / "out" / "r").glob(".runs/*"))      # no working folder left behind


@pytest.mark.parametrize("schedule, said", [("sequential", "2 bootstrap rounds"),
                                            ("overlapped", "4 bootstrap prompts")])   # 2 rounds x 2 prompts
def test_a_stalled_run_says_what_stalled_means_and_what_to_do(tmp_path, prefect_env, schedule, said):
    """A teacher that only ever repeats itself: every candidate is a ROUGE-L duplicate."""
    def parrot(kind, body):
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        if prompt.rstrip().endswith("9."):
            return " Describe glaciers for a curious child in three short sentences."
        return responder(kind, body)

    with StubServer(StubConfig(responder=parrot)) as srv:
        p = _run(tmp_path, prefect_env, srv, "-n", "20", "--schedule", schedule, "--config",
                 str(_yaml(tmp_path, "self_instruct: {max_stalled_rounds: 2, prompts_per_round: 2}\n")))
    assert p.returncode == 0, p.stderr[-2000:]
    version = tmp_path / "out" / "r" / "v0001"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["partial"] == "stalled"
    reason = manifest["partial_reason"]
    assert f"{said} in a row accepted no new instruction" in reason and "seed pool" in reason
    assert "Partial version" in (version / "README.md").read_text()
    assert "accepted no new instruction" in p.stderr       # the summary says it too


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_ctrl_c_says_what_is_saved_and_how_to_resume(tmp_path, prefect_env):
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    with StubServer(StubConfig(responder=responder, latency_s=0.3)) as srv:
        cmd = [sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "200",
               "--out", str(tmp_path / "out"), "--name", "r", "--base-url", srv.base_url, "--model", "stub",
               "--cache", str(tmp_path / "c.sqlite")]
        proc = subprocess.Popen(cmd, cwd=REPO, preexec_fn=interruptible, env=prefect_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while cached_answers(tmp_path / "c.sqlite") < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "run the same command again to resume" in err, err[-2000:]
    n = cached_answers(tmp_path / "c.sqlite")
    assert f"{n:,} teacher answers from this run are cached" in err
    assert "Traceback" not in err and "Crash detected" not in err, err[-3000:]
    assert not list((tmp_path / "out" / "r").glob("v0*"))
    assert not list((tmp_path / "out" / "r").glob(".runs/*")), "an interrupted run left its working folder"


def test_without_a_terminal_progress_is_logged_at_a_steady_pace(tmp_path, prefect_env):
    env = {**prefect_env, "DATAGEN_PROGRESS_INTERVAL_S": "0.5"}
    with StubServer(StubConfig(responder=responder, latency_s=0.2)) as srv:
        p = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "15", "--out", str(tmp_path / "out"),
                     "--base-url", srv.base_url, "--model", "stub", "--max-concurrency", "2",
                     "--cache", str(tmp_path / "c.sqlite")], env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("progress: ")]
    assert len(lines) >= 3, p.stderr[-2000:]
    assert "requests" in lines[-1] and "instructions" in lines[-1] and "retries" in lines[-1]


def test_messages_read_right(tmp_path, prefect_env):
    """Counts that never exceed the target, plurals that agree, one rejected.jsonl schema."""
    import re
    with StubServer(StubConfig(responder=responder)) as srv:
        p = _run(tmp_path, prefect_env, srv, "-n", "5")
    assert p.returncode == 0, p.stderr[-2000:]
    for done, target in re.findall(r"\((\d+) of (\d+) done", p.stderr):
        assert int(done) <= int(target), p.stderr[-2000:]
    assert not re.search(r"\b1 new instructions\b|\b1 instructions\b", p.stderr)
    rows = [json.loads(line) for line in (tmp_path / "out" / "r" / "v0001" / "rejected.jsonl").read_text().splitlines()]
    assert rows and all({"id", "stage", "reason", "detail", "text", "record"} <= set(r) for r in rows)
    assert all(r["record"]["id"] == r["id"] for r in rows)


def test_version_flag_and_help_that_keeps_urls_whole():
    import os
    from datagen import __version__
    p = run_cli(["--version"])
    assert p.returncode == 0 and p.stdout.strip() == f"datagen {__version__}"
    p = run_cli(["run", "self-instruct", "--help"], env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 0
    assert "http://localhost:8000/v1" in p.stdout and "OUT/.cache/responses.sqlite" in p.stdout
    assert "…" not in p.stdout
