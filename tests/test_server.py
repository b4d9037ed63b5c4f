"""The background Prefect server (datagen/flows/server.py): started by the first command, reused by the
next, stopped by `datagen server stop` or after an idle period — never under a command still running."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, run_cli
from datagen.flows import server


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATAGEN_SERVER_DIR": str(home / "server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for key in ("PREFECT_API_URL", "DATAGEN_PREFECT_SERVER", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(key, None)
    return {**env, **extra}


def _lines(path: Path, n: int = 50) -> Path:
    rows = [{"instruction": f"Explain topic number {i % 40} in two sentences.", "output": f"Answer {i % 40}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _leftovers(folder: Path) -> list[int]:
    """Processes of this folder's server still alive: its supervisor (found by the folder in its command
    line) and the server the state file names."""
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if server.SUPERVISOR in cmd and str(folder) in cmd:
            pids.add(int(proc.name))
    info = server.ServerInfo.read(folder)
    if info is not None and server.ours(info.server_pid, server.SERVER):
        pids.add(info.server_pid)
    return sorted(p for p in pids if server.alive(p))


@pytest.fixture
def no_leftovers():
    """Yields a list to add server folders to; after the test, stops what still runs there (by PID) and
    fails the test if anything did."""
    folders: list[Path] = []
    yield folders
    left = {}
    for folder in folders:
        server.stop(folder)
        pids = _leftovers(folder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            left[str(folder)] = pids
    assert not left, f"processes left running: {left}"


def _wait(cond, what: str, deadline_s: float = 90.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def test_first_command_starts_the_server_the_next_reuses_it_and_stop_stops_it(tmp_path, no_leftovers):
    home, data = tmp_path / "dg", _lines(tmp_path / "notes.jsonl")
    folder = home / "server"
    no_leftovers.append(folder)
    env = _env(home)
    try:
        # two commands at once on a machine without a server: one starts it, the other waits and reuses it
        both = [subprocess.Popen([sys.executable, "-m", "datagen.cli", "dedup", str(data), "--out", str(tmp_path / o)],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for o in ("a", "a2")]
        outs = []
        for p in both:
            try:
                outs.append(p.communicate(timeout=300))
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert [p.returncode for p in both] == [0, 0], [err for _, err in outs]
        assert sum("starting a local Prefect server" in err for _, err in outs) == 1
        assert not any("Traceback" in err for _, err in outs)
        info = server.ServerInfo.read(folder)
        assert info is not None and server.alive(info.pid) and server.alive(info.server_pid)
        assert server.live_leases(folder) == []              # the command released its lease at exit

        second = run_cli(["dedup", str(data), "--out", str(tmp_path / "b")], env=env, timeout=300)
        assert second.returncode == 0, second.stderr
        assert "starting a local Prefect server" not in second.stderr
        again = server.ServerInfo.read(folder)
        assert (again.pid, again.server_pid, again.url) == (info.pid, info.server_pid, info.url)
        assert (tmp_path / "b" / "notes" / "v0001" / "records.jsonl").is_file()
        # the three commands' flow runs are on that one server
        runs = httpx.post(info.url + "/flow_runs/filter", json={"limit": 10}, timeout=10).json()
        assert sum(1 for r in runs if r["state_type"] == "COMPLETED") == 3

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


def test_idle_stop_waits_for_a_running_command(tmp_path, monkeypatch, no_leftovers):
    """With a 1 s idle period the server stays up while a command holds its lease, and stops after."""
    folder = tmp_path / "server"
    no_leftovers.append(folder)
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


def test_a_dead_servers_state_file_is_replaced_not_trusted(tmp_path, monkeypatch, no_leftovers):
    """A state file from before a reboot names PIDs that now belong to other processes: they are not
    signalled, and a new server replaces the one it names."""
    folder = tmp_path / "dg" / "server"
    folder.mkdir(parents=True)
    no_leftovers.append(folder)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    stale = server.ServerInfo(pid=bystander.pid, server_pid=2 ** 22 + 8, port=9, url="http://127.0.0.1:9/api",
                              home="x", log="x", idle_s=60, started=0)
    stale.write(folder)
    monkeypatch.setenv("DATAGEN_SERVER_DIR", str(folder))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("DATAGEN_PREFECT_SERVER", raising=False)
    said = []
    try:
        assert server.stop(folder) is None              # nothing of ours to stop
        url = server.ensure_api(say=said.append)
        assert url != stale.url and server.healthy(url)
        assert os.environ["PREFECT_API_URL"] == url and said
        assert bystander.poll() is None                   # never signalled
        info = server.ServerInfo.read(folder)

        # a supervisor killed outright takes its server with it; the next command starts a new pair
        os.kill(info.pid, signal.SIGKILL)
        _wait(lambda: not server.alive(info.server_pid), "the orphaned server to exit", 60)
        os.environ.pop("PREFECT_API_URL")
        again = server.ensure_api(say=said.append)
        assert server.healthy(again) and server.ServerInfo.read(folder).pid != info.pid
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        bystander.kill()
        bystander.wait()
        server.stop(folder)


@pytest.mark.parametrize("var, value, message", [
    ("DATAGEN_SERVER_IDLE_MINUTES", "soon", "DATAGEN_SERVER_IDLE_MINUTES: expected minutes"),
    ("DATAGEN_PREFECT_SERVER", "remote", "DATAGEN_PREFECT_SERVER: expected 'background' or 'ephemeral'"),
])
def test_bad_server_settings_are_one_line(tmp_path, var, value, message, no_leftovers):
    no_leftovers.append(tmp_path / "dg" / "server")
    env = _env(tmp_path / "dg", **{var: value})
    p = run_cli(["dedup", str(_lines(tmp_path / "n.jsonl", 5)), "--out", str(tmp_path / "o")], env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: " + message), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("records.jsonl"))
    assert not (tmp_path / "dg" / "server" / server.STATE_FILE).exists()
