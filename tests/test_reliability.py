"""Faults, crashes and secrets, with whole runs through the real CLI, Prefect flow and store.

The endpoint is the scripted stub (tests/openai_stub.py) answering in Self-Instruct's shapes
(tests/si_responder.py): these tests are about our client, store and resume logic, not generation.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder

pytestmark = pytest.mark.slow
TARGET = 6


def _args(srv, out: Path, cfg: Path | None = None, schedule: str = "overlapped") -> list[str]:
    args = ["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--num-instructions", str(TARGET),
            "--out", str(out), "--name", "rel", "--base-url", srv.base_url, "--model", "stub",
            "--max-concurrency", "4", "--cache", str(out / "cache.sqlite"), "--schedule", schedule]
    return args + (["--config", str(cfg)] if cfg else [])


def _fast_retry_config(tmp: Path) -> Path:
    cfg = tmp / "fast.yaml"
    cfg.write_text("teacher:\n  timeout_s: 1.5\n  backoff_base_s: 0.05\n  backoff_max_s: 0.5\n  max_retries: 8\n")
    return cfg


def _generation_requests(srv) -> int:
    return len(srv.requests_to("/v1/completions"))


def _cached_rows(tmp_path: Path) -> int:
    if not (tmp_path / "cache.sqlite").exists():
        return 0
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        if not db.execute("SELECT name FROM sqlite_master WHERE name = 'responses'").fetchone():
            return 0
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _latest_records(out: Path) -> str:
    d = out / "rel"
    return (d / (d / "LATEST").read_text().strip() / "records.jsonl").read_text()


def _reference(tmp_path_factory, prefect_env, schedule):
    out = tmp_path_factory.mktemp("reference-" + schedule)
    with StubServer(StubConfig(responder=responder)) as srv:
        p = run_cli(_args(srv, out, schedule=schedule), env=prefect_env)
        assert p.returncode == 0, p.stderr[-3000:]
        return {"records": _latest_records(out), "requests": _generation_requests(srv)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prefect_env):
    """An uninterrupted, fault-free run: the dataset every other run must reproduce."""
    return _reference(tmp_path_factory, prefect_env, "overlapped")


@pytest.fixture(scope="module")
def reference_sequential(tmp_path_factory, prefect_env):
    return _reference(tmp_path_factory, prefect_env, "sequential")


def test_reference_run_is_complete(reference):
    rows = [json.loads(x) for x in reference["records"].splitlines()]
    assert len({r["instruction"] for r in rows}) == TARGET and reference["requests"] > TARGET


def test_thirty_percent_faults_same_records_retries_counted(tmp_path, prefect_env, reference):
    faults = StubConfig(responder=responder, faults_per_request_key=1, retry_after_s=0.2, timeout_hang_s=4,
                        rate_429=0.05, rate_500=0.04, rate_502=0.04, rate_503=0.04, rate_timeout=0.03,
                        rate_reset=0.04, rate_invalid_json=0.03, rate_empty=0.03)
    with StubServer(faults) as srv:
        p = run_cli(_args(srv, tmp_path, _fast_retry_config(tmp_path)), env=prefect_env)
        assert p.returncode == 0, p.stderr[-3000:]
        injected = srv.stats["faults"]
    assert _latest_records(tmp_path) == reference["records"]
    manifest = json.loads((tmp_path / "rel" / "v0001" / "manifest.json").read_text())
    retries = manifest["usage"][0]["retries"]
    assert sum(retries.values()) >= 0.2 * reference["requests"]
    for cause in ("429", "500", "502", "503", "timeout", "invalid_json", "empty"):
        assert retries.get(cause, 0) == injected.get(cause, 0), (cause, retries, injected)
    assert retries.get("connection", 0) == injected.get("reset", 0)


CRASH_POINTS = ["run.start", "teacher.before_request@3", "teacher.after_response@5", "teacher.after_cache_put@9",
                "overlapped.after_fold@3", "overlapped.after_resolve@2", "filter.done",
                "publish.staged", "publish.renamed", "publish.latest", "flow.done",
                # the sequential schedule's own steps
                "round.after_bootstrap", "round.after_classify", "round.after_instances"]


def _assert_no_partial_version(out: Path) -> None:
    d = out / "rel"
    if not d.exists():
        return
    for v in d.glob("v[0-9]*"):
        manifest = json.loads((v / "manifest.json").read_text())
        for name, n in manifest["files"].items():
            assert len((v / name).read_text().splitlines()) == n, (v, name)
    if (d / "LATEST").exists():
        assert (d / (d / "LATEST").read_text().strip() / "manifest.json").exists()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_then_rerun_loses_nothing(tmp_path, prefect_env, reference, reference_sequential, point):
    schedule = "sequential" if point.startswith("round.") else "overlapped"
    reference = reference_sequential if schedule == "sequential" else reference
    with StubServer(StubConfig(responder=responder)) as srv:
        p = run_cli(_args(srv, tmp_path, schedule=schedule), env={**prefect_env, "DATAGEN_CRASH_AT": point})
        assert p.returncode == -9, (point, p.returncode, p.stderr[-2000:])
        _assert_no_partial_version(tmp_path)
        cached = _cached_rows(tmp_path)
        srv.reset()
        p = run_cli(_args(srv, tmp_path, schedule=schedule), env=prefect_env)
        assert p.returncode == 0, p.stderr[-3000:]
        resent = _generation_requests(srv)
    assert _latest_records(tmp_path) == reference["records"]
    # No answer asked for twice: every request of the rerun is one the cache did not hold (each adds a
    # row; a repeat would not). The count itself may differ from the reference's by tasks beyond the
    # target, whose classification depends on when earlier tasks finished (never the records).
    assert resent == _cached_rows(tmp_path) - cached
    if schedule == "sequential":
        assert resent == reference["requests"] - cached
    _assert_no_partial_version(tmp_path)
    assert not [d for d in (tmp_path / "rel" / ".runs").iterdir()]   # crashed working state cleaned


def test_two_runs_publishing_the_same_name_at_once(tmp_path, prefect_env, reference):
    with StubServer(StubConfig(responder=responder)) as srv:
        procs = [subprocess.Popen([os.sys.executable, "-m", "datagen.cli", *_args(srv, tmp_path)],
                                  cwd=Path(__file__).resolve().parents[1], env=prefect_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    published = sorted(o[0].strip().splitlines()[-1] for o in outs)
    assert [Path(x).name for x in published] == ["v0001", "v0002"]
    for v in published:
        assert (Path(v) / "records.jsonl").read_text() == reference["records"]


def test_api_key_never_written_anywhere(tmp_path, prefect_env):
    key = "sk-test-DATAGEN-FAKE-KEY-0123456789abcdef"
    home = Path(prefect_env["PREFECT_HOME"])
    with StubServer(StubConfig(responder=responder, require_api_key=key)) as srv:
        p = run_cli(_args(srv, tmp_path), env={**prefect_env, "OPENAI_API_KEY": key})
        assert p.returncode == 0, p.stderr[-3000:]
    assert key not in p.stdout and key not in p.stderr
    for root in (tmp_path, home):
        for f in root.rglob("*"):
            if f.is_file():
                assert key.encode() not in f.read_bytes(), f
    manifest = json.loads((tmp_path / "rel" / "v0001" / "manifest.json").read_text())
    assert manifest["teacher"]["host"] == "127.0.0.1" and manifest["teacher"]["api_key_set"] is True
    assert srv.base_url not in json.dumps(manifest)   # host only, never the full URL


def test_batch_api_run_publishes_the_same_records(tmp_path, prefect_env, reference):
    cfg = tmp_path / "batch.yaml"
    cfg.write_text("teacher:\n  batch_poll_s: 0.2\n")
    with StubServer(StubConfig(responder=responder, batch_delay_s=0.2)) as srv:
        p = run_cli([*_args(srv, tmp_path, cfg), "--batch-api"], env=prefect_env)
        assert p.returncode == 0, p.stderr[-3000:]
        direct = _generation_requests(srv)
        batches = len([r for r in srv.requests_to("/v1/batches") if r["method"] == "POST"])
    assert _latest_records(tmp_path) == reference["records"]
    assert direct == 0 and batches >= 3         # every answer came through the batch API
