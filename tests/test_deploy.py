"""`prefect deploy --all` registers one deployment per recipe from a clean checkout, and the entry
points run the same recipes as the CLI (a failing artifact never fails a published run; the weekly
re-filter publishes only when LATEST changed)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import REPO, run_cli
from openai_stub import StubConfig, StubServer
from si_responder import responder

pytestmark = pytest.mark.slow

# deployment -> (entry point flow, cron, schedule active): every teacher-calling schedule is paused.
EXPECTED = {
    "nightly-self-instruct": ("self-instruct-scheduled", "0 2 * * *", False),
    "nightly-evol-instruct": ("evol-instruct-scheduled", "0 3 * * *", False),
    "nightly-distill": ("distill-scheduled", "0 4 * * *", False),
    "weekly-alpaca-pipeline": ("pipeline-scheduled", "0 5 * * 0", False),
    "weekly-refilter": ("refilter-scheduled", "0 6 * * 1", True),
}


def _prefect(args, env, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _clean_checkout(dest: Path) -> Path:
    """The repository's tracked files only (no outputs/, .venv, caches): what a fresh clone holds."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for rel in filter(None, listed.stdout.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_deploy_all_from_a_clean_checkout_registers_every_recipe(tmp_path, prefect_env):
    clone = _clean_checkout(tmp_path / "clone")
    env = {**prefect_env, "DATAGEN_HOME": str(clone), "PYTHONPATH": str(clone)}
    p = _prefect(["work-pool", "create", "datagen-local", "--type", "process"], env, cwd=clone)
    assert p.returncode == 0 or "already exists" in (p.stdout + p.stderr), p.stdout + p.stderr
    p = _prefect(["--no-prompt", "deploy", "--all"], env, cwd=clone)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    with httpx.Client(base_url=env["PREFECT_API_URL"], timeout=30) as api:
        deployments = api.post("/deployments/filter", json={"deployments": {"name": {"any_": list(EXPECTED)}}}).json()
        flows = {f["id"]: f["name"] for f in api.post("/flows/filter", json={}).json()}
    got = {d["name"]: d for d in deployments}
    assert set(got) == set(EXPECTED)
    for name, (flow_name, cron, active) in EXPECTED.items():
        d = got[name]
        assert flows[d["flow_id"]] == flow_name, name
        assert d["work_pool_name"] == "datagen-local", name
        assert [(s["schedule"]["cron"], s["active"]) for s in d["schedules"]] == [(cron, active)], name
        assert d["entrypoint"].startswith("datagen/flows/scheduled.py:"), d["entrypoint"]
        if flow_name != "refilter-scheduled":
            assert d["parameters"]["extend"] is True, name   # nights grow the dataset by default
        # every parameter the deployment sets is one its entry point takes (no typo reaches a schedule)
        assert set(d["parameters"]) <= set(d["parameter_openapi_schema"]["properties"]), name
    # the pull step runs the flow from DATAGEN_HOME, where the relative paths in the parameters exist
    assert got["nightly-self-instruct"]["pull_steps"][0]["prefect.deployments.steps.set_working_directory"] == \
        {"directory": str(clone)}
    for rel in ("seeds/175.jsonl", "configs/alpaca-style.yaml"):
        assert (clone / rel).is_file()


def test_scheduled_entry_point_publishes_even_when_artifacts_fail(tmp_path, prefect_env):
    """The UI artifacts are made after publish; when the API refuses them the run still publishes and
    only warns."""
    code = (
        "import asyncio, sys\n"
        "import prefect.artifacts as a\n"
        "def refuse(*args, **kw):\n"
        "    raise RuntimeError('artifact API refused')\n"
        "a.acreate_table_artifact = refuse\n"
        "from datagen.flows.scheduled import scheduled_self_instruct\n"
        f"print(asyncio.run(scheduled_self_instruct(seeds='seeds/175.jsonl', num_instructions=3, name='sched', "
        f"out={str(tmp_path)!r}, base_url=sys.argv[1], model='stub', extend=False)))\n")
    with StubServer(StubConfig(responder=responder)) as srv:
        p = subprocess.run([sys.executable, "-c", code, srv.base_url], cwd=REPO, env=prefect_env,
                           capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    path = p.stdout.strip().splitlines()[-1]
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    assert manifest["counts"]["instructions"] == 3 and manifest["dataset"] == "sched"
    assert manifest["config"]["extend"] is False
    assert "artifacts were not created: artifact API refused" in p.stdout + p.stderr


def test_weekly_refilter_publishes_only_when_latest_changed(tmp_path, prefect_env):
    rows = [{"instruction": f"Describe the colour number {i} in a sentence.", "input": "",
             "output": f"Colour {i} is a warm shade that sits between red and orange on the wheel."} for i in range(6)]
    rows.append({"instruction": "Say something about rivers.", "input": "", "output": ""})
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = tmp_path / "store"
    p = run_cli(["dedup", str(src), "--no-minhash", "--name", "rf", "--out", str(store)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    code = (
        "import sys\n"
        "from datagen.errors import DatagenError\n"
        "from datagen.flows.scheduled import scheduled_refilter\n"
        "out = sys.argv[1]\n"
        "print(scheduled_refilter(dataset='rf', out=out))\n"
        "print(scheduled_refilter(dataset='rf', out=out))\n"
        "try:\n"
        "    scheduled_refilter(dataset='missing', out=out)\n"
        "except DatagenError as e:\n"
        "    print('error:', e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(store)], cwd=REPO, env=prefect_env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    first, second, error = p.stdout.strip().splitlines()[-3:]
    assert Path(first).name == "v0002" and second == first          # the second week found nothing new
    assert sorted(x.name for x in (store / "rf").iterdir() if x.name.startswith("v")) == ["v0001", "v0002"]
    manifest = json.loads((Path(first) / "manifest.json").read_text())
    assert manifest["recipe"] == "filter" and manifest["parent"].endswith("v0001")
    assert manifest["rejected"]["empty_output"] == {"empty_output": 1} and manifest["counts"]["records"] == 6
    assert error.startswith("error: ") and "missing" in error and not (store / "missing").exists()
    with httpx.Client(base_url=prefect_env["PREFECT_API_URL"], timeout=30) as api:
        found = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["rf-counts"]}}}).json()
    assert any(json.loads(a["data"]) and a["type"] == "table" for a in found)


def test_evol_distill_and_pipeline_entry_points_publish_what_their_parameters_ask(tmp_path, prefect_env):
    from evol_responder import Script

    src = tmp_path / "ask.txt"
    src.write_text("Explain tides.\nDescribe how rain forms.\nList three uses of copper.\n")
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(f"name: piped\ninput: {src}\nstages:\n  - answer: {{turns: 2}}\n  - publish\n")
    store = tmp_path / "store"
    code = (
        "import asyncio, json, sys\n"
        "from datagen.flows.scheduled import scheduled_distill, scheduled_evol_instruct, scheduled_pipeline\n"
        "url, src, pipe, out = sys.argv[1:]\n"
        "async def main():\n"
        "    print(await scheduled_evol_instruct(input=src, name='ev', out=out, rounds=1, base_url=url, model='stub'))\n"
        "    print(await scheduled_distill(input=src, name='di', out=out, samples=2, base_url=url, model='stub'))\n"
        "    print(await scheduled_pipeline(config=pipe, out=out, base_url=url, model='stub', extend=False))\n"
        "asyncio.run(main())\n")
    with StubServer(StubConfig(responder=Script())) as srv:
        p = subprocess.run([sys.executable, "-c", code, srv.base_url, str(src), str(pipeline), str(store)], cwd=REPO,
                           env=prefect_env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ev, di, pi = (json.loads((Path(x) / "manifest.json").read_text()) for x in p.stdout.strip().splitlines()[-3:])
    assert (ev["recipe"], ev["dataset"], ev["config"]["evol"]["rounds"]) == ("evol-instruct", "ev", 1)
    assert (di["recipe"], di["dataset"], di["config"]["distill"]["samples"]) == ("distill", "di", 2)
    assert (pi["recipe"], pi["dataset"]) == ("pipeline", "piped")
    assert [ev["config"]["extend"], di["config"]["extend"], pi["config"]["extend"]] == [True, True, False]
    conversations = [json.loads(line)["conversation"] for line in open(store / "piped" / "v0001" / "records.jsonl")]
    assert conversations and all(len(c) == 4 for c in conversations)     # the pipeline's turns: 2
