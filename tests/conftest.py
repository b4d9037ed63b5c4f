"""Shared fixtures: paths, one Prefect API server per test session, CLI runner."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
sys.path.insert(0, str(REPO / "tests"))
# A CLI run without the session server (prefect_env) keeps Prefect's temporary server: the tests must
# not start, or leave behind, the background server a user's commands share (tests/test_server.py
# tests that one, in its own DATAGEN_SERVER_DIR).
os.environ.setdefault("DATAGEN_PREFECT_SERVER", "ephemeral")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is absent (only in the datagen workplace)")
    return REFERENCE


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory) -> dict[str, str]:
    """One Prefect API server for the whole session (its start costs ~10 s); CLI runs point at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env={**env, "PREFECT_API_URL": ""}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
        time.sleep(0.5)
    yield env
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def interruptible() -> None:
    """preexec_fn for a child the test will Ctrl-C: a shell that starts a job in the background sets
    SIGINT to 'ignore', which children inherit and Python then keeps (no KeyboardInterrupt at all)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path = REPO,
            timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args], cwd=cwd, env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


def cached_answers(path: Path) -> int:
    """Rows in a response cache file, read-only (0 while it does not exist or is still being created)."""
    import sqlite3

    from datagen.teacher.cache import cached_answer_count
    try:
        return cached_answer_count(path)
    except sqlite3.Error:
        return 0
