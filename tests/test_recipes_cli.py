"""`datagen run evol-instruct / distill / pipeline` through the real CLI and Prefect, against a scripted
loopback teacher (exact responses matter: lineage, resume after SIGKILL, counts), and their bad-input
errors. The embedded-teacher runs are in test_recipes_embedded.py."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from evol_responder import Script
from openai_stub import StubConfig, StubServer
from si_responder import responder as si_responder

pytestmark = pytest.mark.slow


def _instructions(tmp_path, n=4):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"Explain topic number {i} to a new student.\n" for i in range(n)))
    return path


def _stub_args(srv, tmp_path, *extra):
    return ["--out", str(tmp_path / "out"), "--base-url", srv.base_url, "--model", "stub",
            "--cache", str(tmp_path / "c.sqlite"), *extra]


def _version(tmp_path, name):
    d = tmp_path / "out" / name
    return d / (d / "LATEST").read_text().strip()


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_evol_instruct_publishes_every_rounds_survivors_with_lineage(tmp_path, prefect_env):
    script = Script(answers={"number 1": "Sorry, no."})
    with StubServer(StubConfig(responder=script)) as srv:
        p = run_cli(["run", "evol-instruct", "--input", str(_instructions(tmp_path)), "--rounds", "2",
                     "--name", "ev", *_stub_args(srv, tmp_path)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "evol pass rate" in p.stderr
    v = _version(tmp_path, "ev")
    records = _rows(v / "records.jsonl")
    inputs = {r["id"]: r for r in _rows(v / "lineage.jsonl")}
    assert len(records) == 6 and sorted(r["round"] for r in records) == [1, 1, 1, 2, 2, 2]
    by_id = {r["id"]: r for r in records}
    for r in records:
        assert r["method"] == "evol" and r["op"] and r["meta"]["root"] in inputs
        (parent,) = r["parents"]
        assert parent in inputs if r["round"] == 1 else parent in by_id     # every parent id resolves
    m = json.loads((v / "manifest.json").read_text())
    assert m["recipe"] == "evol-instruct" and m["evol"]["eliminations"]["rule2_sorry_short"] == 2
    assert m["evol"]["per_round"]["1"] == {"attempts": 4, "passed": 3, "pass_rate": 0.75}
    assert [u["role"] for u in m["usage"]] == ["teacher", "judge"]
    assert m["usage"][1]["requests"] == 6 and set(m["usage"][1]["by_kind"]) == {"judge_equal"}
    assert m["rejected"] == {"evol": {"rule2_sorry_short": 2}}
    assert all(r["reason"] == "rule2_sorry_short" and "number 1" in r["record"]["instruction"]
               for r in _rows(v / "rejected.jsonl"))


def test_distill_self_chat_exports_valid_sharegpt(tmp_path, prefect_env):
    with StubServer(StubConfig(responder=Script())) as srv:
        p = run_cli(["run", "distill", "--input", "seeds/175.jsonl", "--turns", "2", "--system", "Be kind.",
                     "--name", "di", *_stub_args(srv, tmp_path)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    v = _version(tmp_path, "di")
    rows = _rows(v / "sharegpt.jsonl")
    assert len(rows) == 175
    for row in rows:
        assert row["system"] == "Be kind."          # LLaMA-Factory's system column
        roles = [t["from"] for t in row["conversations"]]
        assert roles == ["human", "gpt", "human", "gpt"] and all(t["value"].strip() for t in row["conversations"])
    msgs = _rows(v / "messages.jsonl")
    assert [m["role"] for m in msgs[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


PIPELINE = """name: pipe
stages:
  - self_instruct: {seeds: %s, num_instructions: 6}
  - evol: {rounds: 2}
  - answer: {turns: 1}
  - judge: {mode: all, min_score: 5}
  - dedup: [exact_dedup]
  - publish
"""


def _pipeline_responder(kind, body):
    if body.get("messages"):
        return Script()(kind, body)
    return si_responder(kind, body)


def _teacher_calls(srv):
    return len(srv.requests_to("/v1/completions")) + len(srv.requests_to("/v1/chat/completions"))


def test_a_pipeline_killed_mid_stage_resumes_with_no_call_repeated(tmp_path, prefect_env):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPELINE % (REPO / "seeds" / "175.jsonl"))
    args = ["run", "pipeline", "--config", str(cfg)]
    with StubServer(StubConfig(responder=_pipeline_responder)) as srv:
        ref = run_cli([*args, *_stub_args(srv, tmp_path / "ref")], env=prefect_env)
        assert ref.returncode == 0, ref.stderr[-3000:]
        total = _teacher_calls(srv)
        srv.reset()
        # SIGKILL after the 30th answer is cached: inside the evol stage (Self-Instruct made ~20 calls)
        killed = run_cli([*args, *_stub_args(srv, tmp_path)], env={**prefect_env, "DATAGEN_CRASH_AT":
                                                                   "teacher.after_cache_put@30"})
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert not (tmp_path / "out" / "pipe" / "LATEST").exists()
        with sqlite3.connect(tmp_path / "c.sqlite") as db:
            cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        srv.reset()
        again = run_cli([*args, *_stub_args(srv, tmp_path)], env=prefect_env)
        assert again.returncode == 0, again.stderr[-3000:]
        resent = _teacher_calls(srv)
    assert resent == total - cached                       # only what was not cached is asked again
    ref_v, v = _version(tmp_path / "ref", "pipe"), _version(tmp_path, "pipe")
    assert (v / "records.jsonl").read_text() == (ref_v / "records.jsonl").read_text()
    m = json.loads((v / "manifest.json").read_text())
    assert m["stages"] == ["1.self_instruct", "2.evol", "3.answer", "4.judge", "5.curate"]
    records = _rows(v / "records.jsonl")
    assert records and all(r["method"] == "distill" for r in records)
    lineage = {r["id"]: r for r in _rows(v / "lineage.jsonl")}
    for r in records:           # answer <- evolved <- ... <- self-instruct record, all resolvable
        chain = [r]
        while chain[-1]["parents"] and chain[-1]["parents"][0] in lineage:
            chain.append(lineage[chain[-1]["parents"][0]])
        assert [c["method"] for c in chain][:2] == ["distill", "evol"] and chain[-1]["method"] == "self_instruct"
    assert all("judge" in r["scores"] for r in records)      # mode: all
    assert m["usage"][1]["role"] == "judge" and m["usage"][1]["requests"] > 0


@pytest.mark.parametrize("args, message", [
    (["run", "evol-instruct", "--input", "seeds/175.jsonl", "--weights", "deepen=1"],
     "--weights: unknown operation 'deepen'"),
    (["run", "evol-instruct", "--input", "seeds/175.jsonl", "--rounds", "0"], "--rounds: must be at least 1"),
    (["run", "distill", "--input", "seeds/175.jsonl", "--turns", "0"], "--turns: must be a whole number"),
    (["run", "distill", "--input", "seeds/175.jsonl", "--judge-min-score", "11"], "--judge-min-score: must be"),
    (["run", "distill", "--input", "seeds/175.jsonl", "--judge-base-url", "http://127.0.0.1:9/v1"],
     "--judge-model: required"),
])
def test_bad_flags_are_one_error_line(tmp_path, args, message):
    p = run_cli([*args, "--out", str(tmp_path / "out")])
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_an_input_with_no_instructions_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"instruction": ""}\n{"instruction": "  "}\n')
    p = run_cli(["run", "evol-instruct", "--input", str(empty), "--out", str(tmp_path / "out")])
    assert p.returncode == 2 and "error: --input: " in p.stderr and "no instructions to start from" in p.stderr


@pytest.mark.parametrize("yaml_text, message", [
    ("stages: [evol, answr]\ninput: x.txt\n", "stages[2]: unknown stage 'answr' (known: self_instruct, evol"),
    ("stages: [evol]\n", "input: required unless the first stage is self_instruct"),
    ("stages: [{evol: {rounds: 0}}]\ninput: x.txt\n", "stages[1].evol.rounds: must be a whole number between 1 and 100"),
    ("stages: [{evol: {weights: {deepen: 1}}}]\ninput: x.txt\n", "unknown operation 'deepen'"),
    ("stages: [publish, evol]\ninput: x.txt\n", "publish must be the last stage"),
    ("stages: [evol, {self_instruct: {seeds: s.jsonl}}]\ninput: x.txt\n", "it must be the first stage"),
    ("stages: [{dedup: [rouge, bogus]}]\ninput: x.txt\n", "unknown step 'bogus'"),
    ("stages: [evol]\ninput: x.txt\nself_instruct: {}\n", "unknown top-level setting 'self_instruct'"),
])
def test_bad_pipeline_configs_name_the_stage(tmp_path, yaml_text, message):
    (tmp_path / "x.txt").write_text("Explain rain.\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml_text)
    p = run_cli(["run", "pipeline", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr[-2000:]


def test_shipped_configs_are_valid(tmp_path):
    """Every example in configs/ passes the pipeline's checks (input datasets aside)."""
    from datagen.errors import DatagenError
    from datagen.runspec import load_config, pipeline_run

    for path in sorted((REPO / "configs").glob("*.yaml")):
        try:
            run, _ = pipeline_run(config_path=path, cfg=load_config(path), out=tmp_path, name=None,
                                  teacher_flags={}, judge_flags={})
        except DatagenError as e:
            assert "no dataset 'alpaca-style'" in str(e), (path, e)     # wizardlm-style reads alpaca-style's output
            continue
        assert run["stages"], path


def test_a_run_that_keeps_nothing_publishes_nothing_but_keeps_every_reject(tmp_path, prefect_env):
    script = Script(answers={"Explain": "Sorry, no."}, scores={"Sorry": 1})
    with StubServer(StubConfig(responder=script)) as srv:
        p = run_cli(["run", "distill", "--input", str(_instructions(tmp_path)), "--name", "none",
                     *_stub_args(srv, tmp_path)], env=prefect_env)
    assert p.returncode == 2, p.stderr[-3000:]
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert "no record survived (judge: judge_below_min_score 4)" in line and "Traceback" not in p.stderr
    kept = Path(line.rsplit(" in ", 1)[1])
    rows = _rows(kept)
    assert len(rows) == 4 and all(r["reason"] == "judge_below_min_score" and r["detail"]["score"] == 1 for r in rows)
    assert not (tmp_path / "out" / "none" / "LATEST").exists()


def test_self_instruct_judges_only_when_asked(tmp_path, prefect_env):
    args = ["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", "4"]
    with StubServer(StubConfig(responder=_pipeline_responder)) as srv:
        plain = run_cli([*args, "--name", "plain", *_stub_args(srv, tmp_path)], env=prefect_env)
        assert plain.returncode == 0, plain.stderr[-3000:]
        assert not [b for b in srv.requests_to("/v1/chat/completions")]      # the paper has no judge
        judged = run_cli([*args, "--name", "judged", "--judge", "all", *_stub_args(srv, tmp_path)], env=prefect_env)
    assert judged.returncode == 0, judged.stderr[-3000:]
    v = _version(tmp_path, "judged")
    records = _rows(v / "records.jsonl")
    assert records and all(r["scores"]["judge"]["score"] == 7 for r in records)
    assert (v / "records.jsonl").read_text().count('"rouge_max"') == len(records)
    m = json.loads((v / "manifest.json").read_text())
    assert m["usage"][1]["role"] == "judge" and m["usage"][1]["requests"] == len(records)
    assert [r["instruction"] for r in records] == [r["instruction"] for r in _rows(_version(tmp_path, "plain") / "records.jsonl")]
