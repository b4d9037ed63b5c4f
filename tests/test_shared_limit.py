"""One endpoint, many runs: with teacher.shared_limit, two runs at once against one loopback teacher
never have more requests in flight there than the limit, which Prefect creates on first use."""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from conftest import REPO
from openai_stub import StubConfig, StubServer
from si_responder import responder

from datagen.flows.shared_limit import limit_name

pytestmark = pytest.mark.slow


def _two_runs_at_once(tmp_path, env, tag):
    seen = {"now": 0, "max": 0}

    async def slow(kind, body):
        seen["now"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        try:
            await asyncio.sleep(0.3)      # long enough for the two runs to overlap
            return responder(kind, body)
        finally:
            seen["now"] -= 1

    with StubServer(StubConfig(responder=slow)) as srv:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "6",
             "--base-url", srv.base_url, "--model", "stub", "--max-concurrency", "8", "--name", f"{tag}{i}",
             "--seed", str(i), "--out", str(tmp_path / tag), "--cache", str(tmp_path / f"{tag}{i}.sqlite")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        url = srv.base_url
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    return seen["max"], url


def test_two_runs_on_one_endpoint_share_its_limit(tmp_path, prefect_env):
    free, _ = _two_runs_at_once(tmp_path, prefect_env, "free")
    assert free > 3                          # without it, the two runs together go past 3
    capped, url = _two_runs_at_once(tmp_path, {**prefect_env, "DATAGEN_SHARED_LIMIT": "3"}, "capped")
    assert 1 <= capped <= 3
    p = subprocess.run([sys.executable, "-m", "prefect", "gcl", "inspect", limit_name(url)], cwd=REPO,
                       env=prefect_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "3" in p.stdout, p.stdout + p.stderr


def test_a_shared_limit_needs_a_shared_prefect_server(tmp_path, prefect_env):
    env = {k: v for k, v in prefect_env.items() if k != "PREFECT_API_URL"}
    env["DATAGEN_SHARED_LIMIT"] = "3"
    with StubServer(StubConfig(responder=responder)) as srv:
        p = subprocess.run([sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--seeds", "seeds/175.jsonl",
                            "-n", "3", "--base-url", srv.base_url, "--model", "stub", "--out", str(tmp_path / "o"),
                            "--cache", str(tmp_path / "c.sqlite")], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
        asked = len(srv.requests_to("/v1/completions"))
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "shared_limit" in errors[0] and "PREFECT_API_URL" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and asked == 0
    assert not list((tmp_path / "o").glob("*/v0*"))
