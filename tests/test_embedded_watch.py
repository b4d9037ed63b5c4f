"""The embedded teacher is a child we watch: a crash restarts it once, SIGILL or a second crash stops
the run with one line, and nothing answered before is lost from the cache."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from conftest import cached_answers
from datagen.errors import TeacherUnavailable
from datagen.teacher.cache import ResponseCache
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig
from datagen.teacher.embedded import EmbeddedTeacher, describe_exit

pytestmark = pytest.mark.slow
PARAMS = {"temperature": 0, "max_tokens": 4}


def _kill(proc: subprocess.Popen, sig: int) -> None:
    """Kill the server and wait until it is gone (reaping through its Popen, so its status is kept)."""
    proc.send_signal(sig)
    proc.wait(timeout=30)


def test_exit_reasons_say_what_to_do():
    assert "illegal instruction" in describe_exit(-signal.SIGILL)
    assert "make clean && make install" in describe_exit(-signal.SIGILL)
    assert "SIGSEGV" in describe_exit(-signal.SIGSEGV)
    assert "code 3" in describe_exit(3)


def _run(tmp_path, kill_sig: int, kills: int):
    """Three answers, then the server is killed `kills` times; returns (answers, error, teacher, cache)."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    embedded = EmbeddedTeacher(log_path=tmp_path / "llama-server.log")
    out, err = [], None

    async def go():
        nonlocal err
        async with Teacher(TeacherConfig(), cache, embedded=embedded) as t:
            for i in range(3):
                out.append(await t.complete(f"Say the number {i}.", PARAMS))
            for k in range(kills):
                _kill(embedded.proc, kill_sig)
                try:
                    out.append(await t.complete(f"Say the word {k}.", PARAMS))
                except TeacherUnavailable as e:
                    err = e
                    return t
            return t

    teacher = asyncio.run(go())
    return out, err, teacher, embedded, cache


def test_a_crashed_server_is_restarted_once_and_the_run_goes_on(tmp_path):
    out, err, teacher, embedded, cache = _run(tmp_path, signal.SIGKILL, kills=1)
    assert err is None
    assert len(out) == 4 and not out[-1].cached
    assert embedded.starts == 2 and teacher.usage.retries["embedded_restart"] == 1
    assert len(cache) == 4
    assert embedded.proc is None          # stopped at the end of the run


def test_a_second_crash_stops_the_run_with_one_line(tmp_path):
    out, err, teacher, embedded, cache = _run(tmp_path, signal.SIGSEGV, kills=2)
    assert err is not None and len(out) == 4
    msg = str(err)
    assert "\n" not in msg and "SIGSEGV" in msg and "again after a restart" in msg
    assert str(tmp_path / "llama-server.log") in msg
    assert len(cache) == 4                # nothing answered before the crash is lost


def test_sigill_is_not_restarted_and_says_why(tmp_path):
    out, err, teacher, embedded, cache = _run(tmp_path, signal.SIGILL, kills=1)
    assert err is not None and embedded.starts == 1
    assert "SIGILL" in str(err) and "illegal instruction" in str(err) and "\n" not in str(err)
    assert len(cache) == 3

    async def again():            # every later request fails at once, without retrying a dead port
        async with Teacher(TeacherConfig(), cache, embedded=embedded) as t:
            t._dead = err
            await t.complete("Anything new.", PARAMS)
    with pytest.raises(TeacherUnavailable):
        asyncio.run(again())


def test_startup_self_test_catches_a_server_that_dies_on_its_first_completion(tmp_path, monkeypatch):
    """Health answers before any kernel runs; the one-token completion is what finds a bad build."""
    original = EmbeddedTeacher._self_test

    def sigill_then_test(self):
        _kill(self.proc, signal.SIGILL)
        return original(self)

    monkeypatch.setattr(EmbeddedTeacher, "_self_test", sigill_then_test)
    server = EmbeddedTeacher(log_path=tmp_path / "log")
    with pytest.raises(TeacherUnavailable) as e:
        server.start()
    assert "SIGILL" in str(e.value) and "first completion" in str(e.value)
    assert server.proc is None


def _run_cli_and_signal_the_server(tmp_path, prefect_env, sig: int, n: int = 3):
    """A real `datagen run` on the embedded teacher; once a few answers are cached, `sig` hits the server."""
    import sys
    import time

    from conftest import REPO
    from test_e2e_self_instruct import _llama_children

    cache = tmp_path / "c.sqlite"
    cmd = [sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", str(n),
           "--out", str(tmp_path / "out"), "--name", "w", "--max-tokens", "128", "--cache", str(cache)]
    logs = open(tmp_path / "stdout", "w+"), open(tmp_path / "stderr", "w+")   # files: a full pipe would stall it
    proc = subprocess.Popen(cmd, cwd=REPO, env=prefect_env, stdout=logs[0], stderr=logs[1], text=True)
    deadline = time.monotonic() + 300
    while cached_answers(cache) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    children = _llama_children(proc.pid)
    assert children, "the embedded teacher was not running"
    os.kill(children[0], sig)
    proc.wait(timeout=600)
    out, err = ((tmp_path / name).read_text() for name in ("stdout", "stderr"))
    return proc.returncode, out, err, cache


def test_cli_run_survives_a_killed_server_and_publishes(tmp_path, prefect_env):
    code, out, err, cache = _run_cli_and_signal_the_server(tmp_path, prefect_env, signal.SIGKILL)
    assert code == 0, err[-3000:]
    assert "restarting it once" in err and "Traceback" not in err
    manifest = __import__("json").loads((tmp_path / "out" / "w" / "v0001" / "manifest.json").read_text())
    assert manifest["counts"]["instructions"] == 3
    assert manifest["usage"][0]["retries"].get("embedded_restart") == 1


def test_cli_run_stops_on_sigill_with_one_line_and_keeps_the_cache(tmp_path, prefect_env):
    code, out, err, cache = _run_cli_and_signal_the_server(tmp_path, prefect_env, signal.SIGILL)
    assert code == 1, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert "SIGILL" in errors[0] and "illegal instruction" in errors[0] and "make clean && make install" in errors[0]
    log = errors[0].rsplit("log: ", 1)[1].strip()
    assert os.path.exists(log), "the error names a log that is not there"
    assert "Traceback" not in err
    assert f"{cached_answers(cache):,} teacher answers from this run are cached" in err and "run the same command again" in err
    assert not list((tmp_path / "out" / "w").glob("v0*"))
