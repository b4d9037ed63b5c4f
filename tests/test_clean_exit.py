"""A successful run ends with the summary and the version's path: no traceback, nothing alarming,
even when a fast endpoint finishes before Prefect's temporary server has recorded the task runs."""
from __future__ import annotations

import os

import pytest

from conftest import run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder


@pytest.mark.slow
def test_a_fast_successful_run_on_the_temporary_server_prints_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with StubServer(StubConfig(responder=responder)) as srv:
        p = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "40", "--out", str(tmp_path / "out"),
                     "--base-url", srv.base_url, "--model", "fake", "--cache", str(tmp_path / "c.sqlite")], env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Starting temporary server" in p.stderr          # the case that used to print tracebacks
    assert "Traceback" not in p.stderr and "CancelledError" not in p.stderr, p.stderr[-3000:]
    assert " ERROR " not in p.stderr, p.stderr[-3000:]
    assert p.stdout.strip().endswith("self-instruct/v0001")
