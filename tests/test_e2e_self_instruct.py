"""End to end on the real embedded teacher (llama.cpp + SmolLM2-135M) and the real Prefect engine."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from conftest import REPO, interruptible, run_cli
from datagen.filters.instruction import InstructionRules
from datagen.store.seeds import load_seeds

pytestmark = pytest.mark.slow
TARGET = 5


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _args(out: Path, seeds: str = "seeds/175.jsonl", n: int = TARGET) -> list[str]:
    return ["run", "self-instruct", "--seeds", seeds, "--num-instructions", str(n), "--out", str(out),
            "--name", "e2e", "--max-tokens", "256"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, prefect_env):
    out = tmp_path_factory.mktemp("e2e")
    proc = run_cli(_args(out), env=prefect_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_run_publishes_a_complete_version(first_run):
    out, proc = first_run
    version = out / "e2e" / "v0001"
    assert proc.stdout.strip().splitlines()[-1] == str(version)
    assert (out / "e2e" / "LATEST").read_text().strip() == "v0001"
    assert not list((out / "e2e").glob(".runs/*/version"))
    manifest = json.loads((version / "manifest.json").read_text())
    alpaca = _jsonl(version / "alpaca.jsonl")
    records = _jsonl(version / "records.jsonl")
    rejected = _jsonl(version / "rejected.jsonl")
    c = manifest["counts"]
    assert c["instructions"] == TARGET == len({r["instruction"] for r in alpaca})
    assert c["records"] == len(alpaca) == len(records) == len(_jsonl(version / "sharegpt.jsonl")) \
        == len(_jsonl(version / "messages.jsonl"))
    assert c["rejected"] == len(rejected) == sum(sum(v.values()) for v in manifest["rejected"].values())
    by_reason = {(s, r): n for s, rs in manifest["rejected"].items() for r, n in rs.items()}
    task_level = sum(n for (s, r), n in by_reason.items()
                     if r in ("no_valid_instances", "beyond_target", "not_needed", "budget_exhausted") or (s, r) == ("instances", "content_filter"))
    assert c["bootstrap.accepted"] == c["instructions"] + task_level
    assert all(row["stage"] and row["reason"] for row in rejected)
    assert manifest["usage"][0]["requests"] > 0 and manifest["partial"] is None
    assert manifest["teacher"]["model"] == "SmolLM2-135M-Instruct"
    assert set(manifest["prompt_templates_sha256"]) == {"self_instruct/bootstrap", "self_instruct/classify",
                                                         "self_instruct/instances_clf", "self_instruct/instances_gen"}


def test_published_instructions_passed_every_filter(first_run):
    out, _ = first_run
    version = out / "e2e" / "v0001"
    records = _jsonl(version / "records.jsonl")
    seeds = [s.instruction for s in load_seeds(REPO / "seeds" / "175.jsonl")]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    instructions = list(dict.fromkeys(r["instruction"] for r in records))
    for i, inst in enumerate(instructions):
        assert InstructionRules()(inst).keep
        pool = seeds + instructions[:i]
        assert max(scorer.score(inst, p)["rougeL"].fmeasure for p in pool) <= 0.7
    for r in records:
        assert r["output"] and r["input"] != r["output"] and not r["output"].strip().endswith(":")
        assert r["method"] == "self_instruct" and len(r["parents"]) == 8 and r["teacher"]["request"]


def test_rerun_makes_zero_teacher_calls_and_same_records(first_run, prefect_env):
    out, _ = first_run
    proc = run_cli(_args(out), env=prefect_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    v1, v2 = out / "e2e" / "v0001", out / "e2e" / "v0002"
    manifest = json.loads((v2 / "manifest.json").read_text())
    assert manifest["usage"][0]["requests"] == 0 and manifest["usage"][0]["cache_hits"] > 0
    assert (v1 / "records.jsonl").read_text() == (v2 / "records.jsonl").read_text()
    assert (out / "e2e" / "LATEST").read_text().strip() == "v0002"
    assert "embedded teacher" not in proc.stderr   # the server was never started: nothing to ask it


def test_reference_seed_file_runs_unchanged(reference_dir, tmp_path, prefect_env):
    proc = run_cli(_args(tmp_path, str(reference_dir / "self_instruct_seed_tasks.jsonl"), n=2), env=prefect_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "e2e" / "v0001" / "manifest.json").read_text())
    assert manifest["counts"]["instructions"] == 2 and manifest["seeds"]["count"] == 175


def _llama_children(pid: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"llama_cpp.server" in cmd and ppid == pid:
            found.append(int(d.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_embedded_teacher_stops_when_the_run_is_interrupted(tmp_path, prefect_env, sig):
    proc = subprocess.Popen([sys.executable, "-m", "datagen.cli", *_args(tmp_path, n=50)], cwd=REPO,
                            preexec_fn=interruptible,
                            env=prefect_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    children: list[int] = []
    while not children and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        children = _llama_children(proc.pid)
    assert children, "the embedded teacher never started"
    time.sleep(2)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    for pid in children:
        for _ in range(40):
            if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                break
            time.sleep(0.5)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"llama.cpp server {pid} outlived the run ({sig.name})")
    assert not (tmp_path / "e2e" / "LATEST").exists()   # nothing published by an interrupted run


def _tokens_used(manifest: dict) -> int:
    """Every token the run consumed, answered live or from the cache (by_kind counts both)."""
    kinds = manifest["usage"][0]["by_kind"]
    return sum(v["prompt_tokens"] + v["completion_tokens"] for v in kinds.values())


def test_dry_run_estimate_within_15_percent_of_a_real_run(first_run, prefect_env, tmp_path):
    """Calibrated on one run (seed 42), the dry-run predicts another (seed 7) on the embedded teacher.
    The estimate models the sequential schedule's rounds (the overlapped one asks for less: tasks
    beyond the target get no instances)."""
    out, _ = first_run
    args = ["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--num-instructions", str(TARGET),
            "--max-tokens", "256", "--seed", "7", "--out", str(out), "--name", "e2e-dry", "--schedule", "sequential"]
    est = run_cli([*args, "--dry-run", "--assume-from", str(out / "e2e" / "v0001" / "manifest.json")], env=prefect_env)
    assert est.returncode == 0, est.stderr[-2000:]
    estimate = json.loads(est.stdout.strip().splitlines()[-1])
    assert not (out / "e2e-dry").exists()                       # a dry run publishes nothing
    real = run_cli(args, env=prefect_env)
    assert real.returncode == 0, real.stderr[-2000:]
    manifest = json.loads((out / "e2e-dry" / "v0001" / "manifest.json").read_text())
    used = _tokens_used(manifest)
    print(f"dry-run estimate {estimate['total_tokens']} tokens, real run {used} tokens")
    assert abs(estimate["total_tokens"] - used) <= 0.15 * used, (estimate["total_tokens"], used, estimate["rows"],
                                                                 manifest["usage"][0]["by_kind"])


def test_embedded_teacher_honours_a_json_schema(tmp_path):
    """llama.cpp's json_object + schema grammar: even a 135M model answers in the schema's shape."""
    import asyncio

    from datagen.teacher.cache import ResponseCache
    from datagen.teacher.client import Teacher
    from datagen.teacher.config import TeacherConfig

    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"}},
              "required": ["city", "population_millions"]}

    async def go():
        async with Teacher(TeacherConfig(), ResponseCache(tmp_path / "c.sqlite")) as t:
            return await t.complete_json("Name a large city and its population in millions, as JSON.", schema,
                                         {"temperature": 0, "max_tokens": 64})
    value, answer = asyncio.run(go())
    assert isinstance(value["city"], str) and isinstance(value["population_millions"], (int, float))


def test_teacher_serve_prints_url_serves_and_stops_on_ctrl_c():
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "datagen.cli", "teacher", "serve"], cwd=REPO,
                            preexec_fn=interruptible,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        models = httpx.get(f"{url}/models", timeout=10).json()
        assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
        children = _llama_children(proc.pid)
        assert children
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    time.sleep(1)
    assert not [p for p in children if Path(f"/proc/{p}").exists()
                and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]


def test_same_seed_same_dataset_even_with_a_cold_cache(first_run, prefect_env, tmp_path):
    """Per-request seeds make the embedded teacher's sampled answers reproducible across machines/caches."""
    out, _ = first_run
    proc = run_cli(_args(tmp_path), env=prefect_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "e2e" / "v0001" / "records.jsonl").read_text() == (out / "e2e" / "v0001" / "records.jsonl").read_text()
