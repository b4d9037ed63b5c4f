"""A real Prefect server and a process worker execute the nightly Self-Instruct deployment.

The server is the session's (`prefect server start` on 127.0.0.1 with a temporary PREFECT_HOME,
see conftest.prefect_env). The test creates the work pool, deploys prefect.yaml, triggers a small
run of the self-instruct deployment against the loopback teacher, runs `prefect worker start
--run-once`, and checks the flow run COMPLETED, a version was published, and the run left the
table and markdown artifacts keyed by the dataset's name.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from openai_stub import StubConfig, StubServer
from si_responder import responder

DEPLOYMENT = "self-instruct-scheduled/nightly-self-instruct"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _prefect(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _stop(proc: subprocess.Popen) -> None:
    """End a process this test started, and its children, by its process group."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


def _api(env: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=env["PREFECT_API_URL"], timeout=30)


@pytest.mark.slow
def test_worker_runs_the_self_instruct_deployment(tmp_path, prefect_env):
    env = {**prefect_env, "DATAGEN_HOME": str(REPO), "PREFECT_CLIENT_MAX_RETRIES": "2"}
    p = _prefect(["work-pool", "create", "datagen-local", "--type", "process"], env)
    assert p.returncode == 0 or "already exists" in (p.stdout + p.stderr), p.stdout + p.stderr
    p = _prefect(["--no-prompt", "deploy", "--all"], env, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    out = tmp_path / "store"
    name = "Worker_Night"          # not a valid artifact key as is: the artifacts use worker-night-*
    log = open(tmp_path / "worker.log", "w")
    with StubServer(StubConfig(responder=responder)) as srv:
        p = _prefect(["deployment", "run", DEPLOYMENT, "--param", "num_instructions=3",
                      "--param", f"base_url={srv.base_url}", "--param", "model=stub",
                      "--param", f"out={out}", "--param", f"name={name}"], env)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        flow_run_id = UUID.findall(p.stdout)[-1]
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "datagen-local",
                                   "--run-once"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            worker.wait(timeout=240)
        finally:
            _stop(worker)
            log.close()
        worker_log = (tmp_path / "worker.log").read_text()
        assert srv.requests, "the worker's flow run never called the loopback teacher:\n" + worker_log[-3000:]

    with _api(env) as api:
        run = api.get(f"/flow_runs/{flow_run_id}").json()
        assert run["state"]["type"] == "COMPLETED", (run["state"], worker_log[-3000:])
        path = out / name / (out / name / "LATEST").read_text().strip()
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["dataset"] == name and manifest["counts"]["instructions"] == 3
        assert manifest["config"]["extend"] is True          # the deployment's default, passed to the run
        assert sum(1 for _ in open(path / "alpaca.jsonl")) == manifest["counts"]["records"]

        # Item 4: the run published a table and a markdown artifact keyed by the dataset name.
        found = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["worker-night-counts",
                                                                                   "worker-night-summary"]}}}).json()
    by_key = {a["key"]: a for a in found}
    assert set(by_key) == {"worker-night-counts", "worker-night-summary"}, found
    assert by_key["worker-night-counts"]["type"] == "table" and by_key["worker-night-summary"]["type"] == "markdown"
    rows = json.loads(by_key["worker-night-counts"]["data"])
    records = [r["value"] for r in rows if (r["section"], r["stage"], r["item"]) == ("count", "run", "records")]
    assert records == [manifest["counts"]["records"]]
    tokens = {(r["stage"], r["item"]): r["value"] for r in rows if r["section"] == "tokens"}
    teacher = next(u for u in manifest["usage"] if u["role"] == "teacher")
    assert tokens[("teacher", "prompt")] == teacher["prompt_tokens"] > 0
    assert tokens[("teacher", "completion")] == teacher["completion_tokens"] > 0
    rejected = {(r["stage"], r["item"]): r["value"] for r in rows if r["section"] == "rejected"}
    assert rejected == {(s, k): n for s, reasons in manifest["rejected"].items() for k, n in reasons.items()}
    summary = by_key["worker-night-summary"]["data"]
    assert str(path) in summary and f"{name} {path.name}" in summary

    # The same artifacts through the CLI a user would type.
    p = _prefect(["artifact", "inspect", "worker-night-summary"], {**env, "COLUMNS": "1000"})
    assert p.returncode == 0 and str(path) in p.stdout, p.stdout + p.stderr


def test_artifact_keys_and_rows_follow_the_dataset_and_its_manifest():
    from datagen.flows.artifacts import artifact_key, summary_markdown, table_rows

    assert artifact_key("My_Data.v2") == "my-data-v2" and artifact_key("nightly-self-instruct") == "nightly-self-instruct"
    assert artifact_key("A__B..c") == "a-b-c"
    manifest = {"recipe": "pipeline", "parent": "outputs/x/v0001",
                "counts": {"records": 7, "bootstrap.prompts": 4, "per_stage": {"judge": {"kept": 7, "scored": 9}}},
                "rejected": {"judge": {"judge_below_min_score": 2}},
                "usage": [{"role": "teacher", "prompt_tokens": 100, "completion_tokens": 40, "cost_usd": 0.0021},
                          {"role": "judge", "prompt_tokens": 30, "completion_tokens": 5, "cost_usd": None}]}
    rows = {(r["section"], r["stage"], r["item"]): r["value"] for r in table_rows(manifest)}
    assert rows == {("count", "run", "records"): 7, ("count", "bootstrap", "prompts"): 4,
                    ("count", "judge", "kept"): 7, ("count", "judge", "scored"): 9,
                    ("rejected", "judge", "judge_below_min_score"): 2,
                    ("tokens", "teacher", "prompt"): 100, ("tokens", "teacher", "completion"): 40,
                    ("cost_usd", "teacher", ""): 0.0021,
                    ("tokens", "judge", "prompt"): 30, ("tokens", "judge", "completion"): 5}
    text = summary_markdown("x", "/store/x/v0002", manifest)
    assert "# x v0002" in text and "`/store/x/v0002`" in text and "records: 7, rejected: 2" in text
    assert "tokens: 175, cost: $0.0021" in text and "parent: `outputs/x/v0001`" in text
