"""Growing a dataset night after night: `datagen run self-instruct --extend NAME` against the loopback stub.

Each night continues from LATEST: the new version holds the earlier records and -n new instructions, names
its parent, samples with a seed of its own, and adds nothing that is a near-duplicate (ROUGE-L > 0.7 with the
run's tokenizer, or a MinHash duplicate) of an earlier night's instructions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from datagen.filters.minhash import MinHashDedup
from datagen.filters.rouge_novelty import rouge_l_f, tokenize
from openai_stub import StubConfig, StubServer
from si_responder import responder

NEW = 4


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _night(srv, tmp_path, env, schedule, *extra):
    return run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "-n", str(NEW), "--schedule", schedule,
                    "--out", str(tmp_path / "out"), "--base-url", srv.base_url, "--model", "stub",
                    "--cache", str(tmp_path / "c.sqlite"), *extra], env=env)


def _instructions(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["instruction"] for r in records))


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["overlapped", "sequential"])
def test_three_nights_grow_one_dataset_without_near_duplicates(tmp_path, prefect_env, schedule):
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        first = _night(srv, tmp_path, prefect_env, schedule, "--name", "grow")
        assert first.returncode == 0, first.stderr[-3000:]
        for night in (2, 3):
            p = _night(srv, tmp_path, prefect_env, schedule, "--extend", "grow")
            assert p.returncode == 0, p.stderr[-3000:]
            assert p.stdout.strip().splitlines()[-1] == str(tmp_path / "out" / "grow" / f"v{night:04d}")
    d = tmp_path / "out" / "grow"
    assert (d / "LATEST").read_text().strip() == "v0003"
    versions = [d / f"v{i:04d}" for i in (1, 2, 3)]
    records = [_rows(v / "records.jsonl") for v in versions]
    manifests = [json.loads((v / "manifest.json").read_text()) for v in versions]

    assert manifests[0]["parent"] is None and "extend" not in manifests[0]
    tokenizer = manifests[0]["config"]["params"]["rouge_tokenizer"]
    seeds_used = {42}
    for i in (1, 2):
        before, now, m = records[i - 1], records[i], manifests[i]
        assert now[:len(before)] == before                        # v(i+1) holds v(i) whole, in order, unchanged
        added = now[len(before):]
        earlier = _instructions(before)
        new = _instructions(added)
        assert len(new) == NEW and not set(new) & set(earlier)    # -n counts the new instructions only
        assert m["parent"] == f"grow@v{i:04d}"
        assert m["counts"]["records"] == len(now) == len(_rows(versions[i] / "alpaca.jsonl"))
        assert m["counts"]["instructions"] == NEW and m["counts"]["new_records"] == len(added)
        ext = m["extend"]
        assert ext["parent"] == f"grow@v{i:04d}" and ext["base_seed"] == 42
        assert ext["earlier_instructions"] == len(earlier) and ext["new_instructions"] == NEW
        assert ext["seed"] not in seeds_used                      # a new seed every night
        seeds_used.add(ext["seed"])
        assert len({r["id"] for r in now}) == len(now)
        # No near-duplicate of any earlier night, by ROUGE-L computed here and by MinHash.
        index = MinHashDedup()
        for text in earlier:
            index.check_and_add(text, text)
        old_tokens = [tokenize(t, tokenizer) for t in earlier]
        for text in new:
            toks = tokenize(text, tokenizer)
            assert max(rouge_l_f(toks, o) for o in old_tokens) <= 0.7, text
            assert index.check_and_add(text, text).keep, text
        # This night's rejects are its own: candidates too close to earlier nights were refused.
        rejected = _rows(versions[i] / "rejected.jsonl")
        assert all(r["text"] not in new for r in rejected if r["stage"] == "bootstrap")


def test_extending_a_dataset_that_does_not_exist_is_one_error_and_publishes_nothing(tmp_path):
    out = tmp_path / "out"
    p = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--extend", "nosuch", "--out", str(out),
                 "--base-url", "http://127.0.0.1:9/v1", "--model", "stub"])
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--extend: nosuch: no dataset 'nosuch'" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not (out / "nosuch").exists() and not (out / "self-instruct").exists()


def _fake_version(out: Path, name: str, recipe: str, variant: str | None = None) -> None:
    v = out / name / "v0001"
    v.mkdir(parents=True)
    (v / "manifest.json").write_text(json.dumps({"recipe": recipe, "config": {"variant": variant} if variant else {}}))
    (v / "records.jsonl").write_text("")
    (out / name / "LATEST").write_text("v0001\n")


@pytest.mark.parametrize("setup, args, message", [
    (lambda out: _fake_version(out, "ev", "evol-instruct"), ["--extend", "ev"],
     "--extend: ev@v0001 was made by 'evol-instruct', not self-instruct"),
    (lambda out: _fake_version(out, "al", "self-instruct", "alpaca"), ["--extend", "al"],
     "--extend: al@v0001 is the alpaca variant; give --variant alpaca"),
    (lambda out: _fake_version(out, "si", "self-instruct"), ["--extend", "si", "--name", "other"],
     "--name / --extend: --extend si publishes into dataset 'si'"),
    (lambda out: (out / "empty").mkdir(parents=True), ["--extend", "empty"],
     "no published version"),
])
def test_extend_refuses_what_it_cannot_grow(tmp_path, setup, args, message):
    out = tmp_path / "out"
    out.mkdir()
    setup(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    p = run_cli(["run", "self-instruct", "--seeds", "seeds/175.jsonl", *args, "--out", str(out),
                 "--base-url", "http://127.0.0.1:9/v1", "--model", "stub"])
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr[-2000:]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


SCHEDULED = """
import asyncio, json, sys
from pathlib import Path
from datagen.flows.self_instruct import self_instruct_flow
from datagen.runspec import self_instruct_run

out, base_url = Path(sys.argv[1]), sys.argv[2]
for night in range(2):
    run, _, _ = self_instruct_run(seeds=Path("seeds/175.jsonl"), name="nightly", out=out, cfg={}, config_path=None,
                                  teacher_flags={"base_url": base_url, "model": "stub"},
                                  params={"num_instructions": 3}, extend=True)
    print(asyncio.run(self_instruct_flow(run))["path"])
"""


@pytest.mark.slow
def test_a_scheduled_run_with_extend_starts_the_dataset_then_grows_it(tmp_path, prefect_env):
    """The scheduled entry points build runs with extend=True: night 1 has no LATEST and starts the
    dataset with the base seed; night 2 extends it."""
    import subprocess
    import sys

    from conftest import REPO
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        p = subprocess.run([sys.executable, "-c", SCHEDULED, str(tmp_path / "out"), srv.base_url], cwd=REPO,
                           env=prefect_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    v1, v2 = (tmp_path / "out" / "nightly" / v for v in ("v0001", "v0002"))
    m1, m2 = (json.loads((v / "manifest.json").read_text()) for v in (v1, v2))
    assert m1["parent"] is None and m1["extend"]["parent"] is None and m1["extend"]["seed"] == 42
    assert m2["parent"] == "nightly@v0001" and m2["extend"]["seed"] != 42
    r1, r2 = _rows(v1 / "records.jsonl"), _rows(v2 / "records.jsonl")
    assert r2[:len(r1)] == r1 and len(_instructions(r2)) == len(_instructions(r1)) + 3


ALPACA_POOL = ["Write a haiku about winter rain.", "Convert 72 degrees Fahrenheit to Celsius.",
               "Suggest three names for a bakery.", "Explain how vaccines train immunity.",
               "List five uses of baking soda.", "Translate good morning into Spanish.",
               "Summarize the plot of Hamlet briefly.", "Give tips for saving household electricity.",
               "Describe what a compiler does.", "Plan a weekend trip to Lisbon.",
               "Compare cats and dogs as pets.", "Outline steps to change a bike tyre."]


def _alpaca_responder(kind: str, body: dict) -> str:
    """Alpaca-shaped continuations (`4. Instruction: ... ###`) drawn from twelve unrelated instructions, so
    a night repeats the one before unless the novelty index remembers it."""
    import hashlib
    import random

    prompt = body.get("prompt") or body["messages"][-1]["content"]
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    items = []
    for n in range(4, 4 + rng.randint(2, 4)):
        text = rng.choice(ALPACA_POOL)
        items.append(f"{n}. Instruction: {text}\n{n}. Input:\n<noinput>\n{n}. Output:\n"
                     f"A short answer about it, number {rng.randint(1, 10**6)}.\n")
    return "###\n".join(items)[len("4. Instruction:"):] + "###\n"


@pytest.mark.slow
def test_the_alpaca_variant_grows_without_repeating_a_night(tmp_path, prefect_env):
    with StubServer(StubConfig(responder=_alpaca_responder)) as srv:
        for extra in (["--name", "al"], ["--extend", "al"]):
            p = _night(srv, tmp_path, prefect_env, "sequential", "--variant", "alpaca", *extra)
            assert p.returncode == 0, p.stderr[-3000:]
    v1, v2 = (tmp_path / "out" / "al" / v for v in ("v0001", "v0002"))
    r1, r2 = _rows(v1 / "records.jsonl"), _rows(v2 / "records.jsonl")
    m2 = json.loads((v2 / "manifest.json").read_text())
    assert r2[:len(r1)] == r1 and m2["parent"] == "al@v0001" and m2["extend"]["seed"] != 42
    earlier, new = _instructions(r1), _instructions(r2[len(r1):])
    assert len(new) == NEW
    old_tokens = [tokenize(t, "rouge_score") for t in earlier]
    for text in new:
        assert max(rouge_l_f(tokenize(text, "rouge_score"), o) for o in old_tokens) <= 0.7, text


def _state():
    from datagen.methods.self_instruct import SelfInstructParams, SelfInstructState, Templates
    from datagen.store.seeds import load_seeds
    from conftest import REPO
    return SelfInstructState(load_seeds(REPO / "seeds" / "175.jsonl"), SelfInstructParams(), Templates.load())


PUBLISHED = ("Write a short friendly note to a neighbour asking them to water the tomato plants while you travel "
             "abroad next week")


def test_a_near_duplicate_rouge_lets_through_is_caught_by_minhash_when_extending():
    from datagen.teacher.client import Completion
    # The published instruction said twice: ROUGE-L F is 2/3 (under 0.7), its word shingles are nearly all shared.
    doubled = PUBLISHED + " and " + PUBLISHED[0].lower() + PUBLISHED[1:]
    answer = Completion(text=doubled, finish_reason="stop", prompt_tokens=1, completion_tokens=1, cached=False,
                        key="k", model="m")
    fresh = _state()
    fresh.novelty.add(PUBLISHED)                  # only the ROUGE-L index knows it
    assert len(fresh.fold_answer(answer, 1, [])) == 1
    extending = _state()
    extending.continue_from([PUBLISHED])
    assert extending.fold_answer(answer, 1, []) == []
    (row,) = extending.rejected
    assert row["stage"] == "bootstrap" and row["reason"] == "minhash_duplicate"


def test_published_instructions_are_in_the_first_prompts_pool_on_both_schedules():
    from datagen.methods.overlapped import OverlappedRun
    published = [f"{PUBLISHED} number {i}" for i in range(3)]
    state = _state()
    state.continue_from(published)
    assert state.earlier == 3 and [t.instruction for t in state.machine] == published
    text, _ = OverlappedRun(state, 4)._prompt_text(0)
    assert sum(p in text for p in published) == state.params.machine_in_prompt
    (text, _), = state._bootstrap_prompts(1)
    assert sum(p in text for p in published) == state.params.machine_in_prompt


@pytest.mark.slow
def test_a_night_after_a_dedup_extends_the_deduplicated_version(tmp_path, prefect_env):
    """A weekly re-filter publishes into the same dataset; the next night grows that version."""
    with StubServer(StubConfig(responder=lambda kind, body: responder(kind, body))) as srv:
        assert _night(srv, tmp_path, prefect_env, "overlapped", "--name", "wk").returncode == 0
        d = run_cli(["dedup", "wk", "--out", str(tmp_path / "out")], env=prefect_env)
        assert d.returncode == 0, d.stderr[-3000:]
        p = _night(srv, tmp_path, prefect_env, "overlapped", "--extend", "wk")
        assert p.returncode == 0, p.stderr[-3000:]
    v2, v3 = (tmp_path / "out" / "wk" / v for v in ("v0002", "v0003"))
    m3 = json.loads((v3 / "manifest.json").read_text())
    assert json.loads((v2 / "manifest.json").read_text())["recipe"] == "dedup"
    assert m3["recipe"] == "self-instruct" and m3["parent"] == "wk@v0002"
    r2, r3 = _rows(v2 / "records.jsonl"), _rows(v3 / "records.jsonl")
    assert r3[:len(r2)] == r2 and len(_instructions(r3)) == len(_instructions(r2)) + NEW
