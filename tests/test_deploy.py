"""`prefect deploy` registers the scheduled deployment, and its entry point runs the same recipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from openai_stub import StubConfig, StubServer
from si_responder import responder

pytestmark = pytest.mark.slow


def _prefect(args, env):
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_prefect_deploy_registers_the_nightly_schedule(prefect_env):
    env = {**prefect_env, "DATAGEN_HOME": str(REPO)}
    p = _prefect(["work-pool", "create", "datagen-local", "--type", "process"], env)
    assert p.returncode == 0 or "already exists" in (p.stdout + p.stderr), p.stdout + p.stderr
    p = _prefect(["--no-prompt", "deploy", "--all"], env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    p = _prefect(["deployment", "inspect", "self-instruct-scheduled/nightly-self-instruct"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "0 2 * * *" in p.stdout and "datagen-local" in p.stdout


def test_scheduled_entry_point_publishes_a_version(tmp_path, prefect_env):
    code = (
        "import asyncio, sys\n"
        "from datagen.flows.self_instruct import scheduled_self_instruct\n"
        f"print(asyncio.run(scheduled_self_instruct(seeds='seeds/175.jsonl', num_instructions=3, name='sched', "
        f"out={str(tmp_path)!r}, base_url=sys.argv[1], model='stub')))\n")
    with StubServer(StubConfig(responder=responder)) as srv:
        p = subprocess.run([sys.executable, "-c", code, srv.base_url], cwd=REPO, env=prefect_env,
                           capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    path = p.stdout.strip().splitlines()[-1]
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    assert manifest["counts"]["instructions"] == 3 and manifest["dataset"] == "sched"
