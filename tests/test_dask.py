"""Scale-out on Dask: the same flows with `--runner dask`, their teacher requests run by the workers of a
real cluster (a LocalCluster the flow starts, or a scheduler and workers started here as processes),
against the loopback stub. Same seeds, seed and answers: the same dataset as the single process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, _free_port, run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder

N = 12


def _si(srv, out: Path, cache: Path, env, *extra) -> subprocess.CompletedProcess:
    return run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", str(N), "--out", str(out),
                    "--base-url", srv.base_url, "--model", "stub", "--cache", str(cache), "--name", "si",
                    "--max-concurrency", "8", *extra], env=env)


def _published(p: subprocess.CompletedProcess) -> Path:
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return Path(p.stdout.strip().splitlines()[-1])


def _generations(stats: dict) -> int:
    """Completion requests the stub answered (not /models or health checks)."""
    return sum(n for path, n in stats["by_path"].items() if path.endswith("completions"))


def _usage(version: Path) -> dict:
    m = json.loads((version / "manifest.json").read_text())
    return next(u for u in m["usage"] if u["role"] == "teacher")


@pytest.mark.slow
def test_two_worker_localcluster_publishes_the_single_process_dataset(tmp_path, prefect_env):
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        single = _published(_si(srv, tmp_path / "a", tmp_path / "a.sqlite", prefect_env))
        local_requests = _generations(srv.stats)
        srv.reset()
        dask = _published(_si(srv, tmp_path / "b", tmp_path / "b.sqlite", prefect_env,
                              "--runner", "dask", "--dask-workers", "2"))
        seen_by_stub = srv.stats
        srv.reset()
        again = _published(_si(srv, tmp_path / "b", tmp_path / "b.sqlite", prefect_env,
                               "--runner", "dask", "--dask-workers", "2"))
        after_rerun = srv.stats

    # the same records, byte for byte: one novelty index in the driver, whatever worker asked
    assert (dask / "records.jsonl").read_bytes() == (single / "records.jsonl").read_bytes()
    assert (dask / "rejected.jsonl").read_bytes() == (single / "rejected.jsonl").read_bytes()
    manifest = json.loads((dask / "manifest.json").read_text())
    runner = manifest["runner"]
    assert runner["kind"] == "dask" and runner["workers"] == 2
    spread = runner["roles"][0]["requests_per_worker"]
    usage = _usage(dask)
    # the requests really were spread: both workers sent some, and together all the run made
    assert len(spread) == 2 and all(n > 0 for n in spread.values()), spread
    assert sum(spread.values()) == usage["requests"] == _usage(single)["requests"] > 0
    assert _generations(seen_by_stub) == local_requests == usage["requests"]
    # rerun on the cluster: the driver's one cache answers everything, no worker sends a request
    assert (again / "records.jsonl").read_bytes() == (single / "records.jsonl").read_bytes()
    assert _usage(again)["requests"] == 0 and _usage(again)["cache_hits"] == usage["requests"]
    assert _generations(after_rerun) == 0
    assert sum(json.loads((again / "manifest.json").read_text())["runner"]["roles"][0]["requests_per_worker"]
               .values()) == 0


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_existing_scheduler_with_api_key_from_the_workers_environment(tmp_path, prefect_env):
    """`--dask-address` to a scheduler and two workers started as processes; the endpoint wants a key, which
    the workers read from their own environment (it never travels with the tasks)."""
    port, dash = _free_port(), _free_port()
    key = "sk-dask-test-0123456789"
    env = {**prefect_env, "OPENAI_API_KEY": key, "DASK_LOGGING__DISTRIBUTED": "warning"}
    bin_dir = Path(sys.executable).parent
    scheduler = _start([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--dashboard-address", f"127.0.0.1:{dash}"], env, tmp_path / "scheduler.log")
    workers = None
    try:
        workers = _start([str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2",
                          "--nthreads", "1", "--no-dashboard"], env, tmp_path / "workers.log")
        from distributed import Client
        deadline = time.monotonic() + 120
        with Client(f"tcp://127.0.0.1:{port}", timeout=120) as client:
            while len(client.scheduler_info()["workers"]) < 2:
                assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()[-2000:]
                time.sleep(0.5)
        with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body), require_api_key=key)) as srv:
            single = _published(_si(srv, tmp_path / "a", tmp_path / "a.sqlite", env))
            on_cluster = _published(_si(srv, tmp_path / "b", tmp_path / "b.sqlite", env, "--runner", "dask",
                                        "--dask-address", f"tcp://127.0.0.1:{port}"))
        assert (on_cluster / "records.jsonl").read_bytes() == (single / "records.jsonl").read_bytes()
        runner = json.loads((on_cluster / "manifest.json").read_text())["runner"]
        assert runner["address"] == f"tcp://127.0.0.1:{port}"
        assert sum(runner["roles"][0]["requests_per_worker"].values()) == _usage(single)["requests"] > 0
        # the key is in no file the run wrote (manifest, records, cache, logs of the cluster)
        for path in [*(tmp_path / "b").rglob("*"), tmp_path / "b.sqlite", tmp_path / "scheduler.log",
                     tmp_path / "workers.log"]:
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path
    finally:
        if workers is not None:
            _stop(workers)
        _stop(scheduler)


def _bad(args: list[str], env: dict, srv) -> subprocess.CompletedProcess:
    return run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "2", "--base-url", srv.base_url,
                    "--model", "stub", *args], env=env, timeout=120)


@pytest.mark.parametrize("args, code, message", [
    (["--runner", "spark"], 2, "error: Invalid value for '--runner'"),
    (["--runner", "dask", "--dask-address", "tcp://127.0.0.1:{closed}"], 1,
     "error: --dask-address: no Dask scheduler answers at 127.0.0.1:{closed}"),
    (["--runner", "dask", "--dask-address", "127.0.0.1:8786"], 2, "error: --dask-address: expected tcp://HOST:PORT"),
    (["--dask-workers", "3"], 2, "error: --dask-workers: only with --runner dask"),
    (["--runner", "dask", "--dask-workers", "0"], 2, "error: Invalid value for '--dask-workers'"),
    (["--runner", "dask", "--batch-api"], 2, "error: --batch-api: not with --runner dask"),
])
def test_bad_runner_flags_are_one_line_and_publish_nothing(tmp_path, args, code, message):
    closed = _free_port()
    args = [a.replace("{closed}", str(closed)) for a in args]
    env = {**os.environ, "DATAGEN_PREFECT_SERVER": "ephemeral"}
    env.pop("PREFECT_API_URL", None)
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        p = _bad([*args, "--out", str(tmp_path / "out")], env, srv)
        stats = srv.stats
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == code, p.stderr
    assert len(lines) == 1 and lines[0].startswith(message.replace("{closed}", str(closed))), p.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert _generations(stats) == 0


def test_dask_without_a_shared_prefect_server_is_refused(tmp_path):
    """The workers report to the flow's Prefect server: a temporary one in the CLI's process will not do."""
    env = {**os.environ, "DATAGEN_PREFECT_SERVER": "ephemeral"}
    env.pop("PREFECT_API_URL", None)
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        p = _bad(["--runner", "dask", "--out", str(tmp_path / "out")], env, srv)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().startswith("error: --runner dask: the workers report to the flow's Prefect server")
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_a_deployment_flow_runs_on_dask_with_dask_workers(tmp_path, prefect_env):
    """The scheduled (deployment) entry point takes dask_workers like the CLI's --dask-workers."""
    code = ("import asyncio, sys\n"
            "from datagen.flows.scheduled import scheduled_self_instruct\n"
            "print(asyncio.run(scheduled_self_instruct(num_instructions=6, name='night', out=sys.argv[1], "
            "base_url=sys.argv[2], model='stub', dask_workers=2)))\n")
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out"), srv.base_url], cwd=REPO,
                           env=prefect_env, capture_output=True, text=True, timeout=600)
        asked = _generations(srv.stats)
    assert p.returncode == 0, p.stderr[-3000:]
    version = Path(p.stdout.strip().splitlines()[-1])
    runner = json.loads((version / "manifest.json").read_text())["runner"]
    assert runner["kind"] == "dask" and runner["workers"] == 2
    assert sum(runner["roles"][0]["requests_per_worker"].values()) == _usage(version)["requests"] == asked > 0
