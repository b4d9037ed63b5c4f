"""The background Prefect server (datagen/flows/server.py): started by the first command, reused by the
next, stopped by `datagen server stop` or after an idle period — never under a command still running."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from conftest import run_cli
from datagen.flows import server


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATAGEN_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}
    for key in ("PREFECT_API_URL", "DATAGEN_PREFECT_SERVER", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(key, None)
    return env


def _lines(path: Path, n: int = 50) -> Path:
    rows = [{"instruction": f"Explain topic number {i % 40} in two sentences.", "output": f"Answer {i % 40}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _wait(cond, what: str, deadline_s: float = 90.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def test_first_command_starts_the_server_the_next_reuses_it_and_stop_stops_it(tmp_path):
    home, data = tmp_path / "dg", _lines(tmp_path / "notes.jsonl")
    folder = home / "server"
    env = _env(home)
    try:
        first = run_cli(["dedup", str(data), "--out", str(tmp_path / "a")], env=env, timeout=300)
        assert first.returncode == 0, first.stderr
        assert "starting a local Prefect server" in first.stderr
        assert "Traceback" not in first.stderr
        info = server.ServerInfo.read(folder)
        assert info is not None and server.alive(info.pid) and server.alive(info.server_pid)
        assert server.live_leases(folder) == []              # the command released its lease at exit

        second = run_cli(["dedup", str(data), "--out", str(tmp_path / "b")], env=env, timeout=300)
        assert second.returncode == 0, second.stderr
        assert "starting a local Prefect server" not in second.stderr
        again = server.ServerInfo.read(folder)
        assert (again.pid, again.server_pid, again.url) == (info.pid, info.server_pid, info.url)
        assert (tmp_path / "b" / "notes" / "v0001" / "records.jsonl").is_file()
        # both commands' flow runs are on that one server
        runs = httpx.post(info.url + "/flow_runs/filter", json={"limit": 10}, timeout=10).json()
        assert sum(1 for r in runs if r["state_type"] == "COMPLETED") == 2

        status = run_cli(["server", "status"], env=env, timeout=60)
        assert status.returncode == 0 and status.stdout.strip() == info.url

        stopped = run_cli(["server", "stop"], env=env, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert not server.alive(info.pid) and not server.alive(info.server_pid)
        assert not (folder / server.STATE_FILE).exists()
        assert not server.healthy(info.url)
        assert run_cli(["server", "status"], env=env, timeout=60).returncode == 3
    finally:
        server.stop(folder)


def test_idle_stop_waits_for_a_running_command(tmp_path, monkeypatch):
    """With a 1 s idle period the server stays up while a command holds its lease, and stops after."""
    folder = tmp_path / "server"
    (folder / "leases").mkdir(parents=True)
    lease = folder / "leases" / str(os.getpid())      # this test process plays the running command
    lease.touch()
    monkeypatch.setenv("DATAGEN_SERVER_DEBUG", "1")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    try:
        info = server.start(folder, idle_s=1.0)
        log = folder / "server.log"
        checks = lambda: log.read_text(errors="replace").count("idle check: 1 lease(s)")  # noqa: E731
        _wait(lambda: checks() >= 4, "four idle checks under a lease")
        assert server.alive(info.pid) and server.healthy(info.url)
        assert "stopping" not in log.read_text(errors="replace")
        lease.unlink()
        _wait(lambda: not server.alive(info.pid), "the supervisor to stop the idle server")
        _wait(lambda: not server.alive(info.server_pid), "the server process to exit", 30)
        assert "stopping: idle" in log.read_text(errors="replace")
        assert not (folder / server.STATE_FILE).exists()
    finally:
        server.stop(folder)


def test_a_dead_servers_state_file_is_replaced_not_trusted(tmp_path, monkeypatch):
    folder = tmp_path / "dg" / "server"
    folder.mkdir(parents=True)
    stale = server.ServerInfo(pid=2 ** 22 + 7, server_pid=2 ** 22 + 8, port=9, url="http://127.0.0.1:9/api",
                              home="x", log="x", idle_s=60, started=0)
    stale.write(folder)
    monkeypatch.setenv("DATAGEN_HOME", str(tmp_path / "dg"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("DATAGEN_PREFECT_SERVER", raising=False)
    said = []
    try:
        url = server.ensure_api(say=said.append)
        assert url != stale.url and server.healthy(url)
        assert os.environ["PREFECT_API_URL"] == url and said
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop(folder)


@pytest.mark.parametrize("var, value, message", [
    ("DATAGEN_SERVER_IDLE_MINUTES", "soon", "DATAGEN_SERVER_IDLE_MINUTES: expected minutes"),
    ("DATAGEN_PREFECT_SERVER", "remote", "DATAGEN_PREFECT_SERVER: expected 'background' or 'ephemeral'"),
])
def test_bad_server_settings_are_one_line(tmp_path, var, value, message):
    env = _env(tmp_path / "dg", **{var: value})
    p = run_cli(["dedup", str(_lines(tmp_path / "n.jsonl", 5)), "--out", str(tmp_path / "o")], env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: " + message), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("records.jsonl"))
    assert not (tmp_path / "dg" / "server" / server.STATE_FILE).exists()
