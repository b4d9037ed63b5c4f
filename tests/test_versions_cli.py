"""`datagen versions`, `diff` and `show` on a store published in-process: what a user reads about a
dataset's history, a change between two versions, and one version's contents."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from datagen.records import Record
from datagen.store.manifest import build_manifest, dataset_card
from datagen.store.versions import DatasetStore


def rec(i: int, **kw) -> Record:
    return Record(instruction=f"Describe the colour number {i} in one line.", output=f"Colour {i} is bright.",
                  method=kw.pop("method", "self_instruct"), **kw)


def rejected(stage: str, reason: str, n: int) -> list[dict]:
    return [{"stage": stage, "reason": reason, "id": f"{stage}{k}", "text": "t", "detail": {}} for k in range(n)]


def publish(out: Path, records: list[Record], rej: list[dict], *, recipe="self-instruct", parent=None,
            usage=None) -> Path:
    m = build_manifest(recipe=recipe, config={}, seeds={"path": "seeds/s.jsonl", "sha256": "1" * 64}, templates={},
                       teacher={"model": "tiny-teacher", "host": "127.0.0.1"}, counts={"records": len(records)},
                       usage=usage or [], timings={}, rejected=rej, run_id="t", parent=parent,
                       extra={"stages": ["instances", "filter"]})
    store = DatasetStore(out, "colours")
    return store.publish(f"r{len(store.versions())}", records, rej, m, dataset_card("colours", m))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "out"
    v1 = [rec(i) for i in range(6)]
    publish(out, v1, rejected("filter", "rouge_similar", 4) + rejected("instances", "empty_output", 1),
            usage=[{"role": "teacher", "prompt_tokens": 300, "completion_tokens": 200, "total_tokens": 500,
                    "cost_usd": 0.25}])
    # v2: drops records 0 and 1, keeps 2-5 (record 3 now carries a judge score), adds an evolved child of 2
    # and a fresh record
    child = Record(instruction="Describe colour number 2 and its complement, in two lines.", output="Bright; dull.",
                   method="evol", parents=[v1[2].id], round=1, op="deepen")
    v2 = [v1[2], rec(3, scores={"judge": 4}), v1[4], v1[5], child, rec(9, lang="en")]
    publish(out, v2, rejected("filter", "rouge_similar", 1) + rejected("judge", "low_score", 2), recipe="evol-instruct",
            parent="colours@v0001", usage=[{"role": "teacher", "prompt_tokens": 70, "completion_tokens": 30,
                                            "total_tokens": 100, "cost_usd": None}])
    return out


def cli(store: Path, *args: str):
    return run_cli([*args, "--out", str(store)])


def test_versions_table_from_each_manifest(store):
    res = cli(store, "versions", "colours", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["version"], r["latest"], r["recipe"], r["records"], r["parent"], r["tokens"], r["cost_usd"], r["rejected"])
            for r in rows] == [("v0001", False, "self-instruct", 6, "", 500, 0.25, 5),
                               ("v0002", True, "evol-instruct", 6, "colours@v0001", 100, None, 3)]
    table = cli(store, "versions", "colours").stdout
    assert "v0002 *" in table and "colours@v0001" in table and "$0.2500" in table and "evol-instruct" in table
    # the dataset folder names the dataset as well
    assert json.loads(run_cli(["versions", str(store / "colours"), "--json"]).stdout) == rows


def test_diff_by_record_id_and_rejections_side_by_side(store):
    res = cli(store, "diff", "colours", "v1", "v2", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert (d["added"], d["removed"], d["changed"], d["unchanged"]) == (2, 2, 1, 3)
    assert d["added_from_a"] == 1 and d["changed_fields"] == {"scores": 1}
    assert {rid for rid, _ in d["examples"]["removed"]} == {rec(0).id, rec(1).id}
    assert [rid for rid, _ in d["examples"]["changed"]] == [rec(3).id]
    assert {(r["stage"], r["reason"], r["a"], r["b"]) for r in d["rejected"]} == {
        ("filter", "rouge_similar", 4, 1), ("instances", "empty_output", 1, 0), ("judge", "low_score", 0, 2)}
    text = cli(store, "diff", "colours", "v0001", "2").stdout
    assert "added 2   removed 2   changed 1   unchanged 3" in text
    assert "rouge_similar" in text and "-3" in text and "low_score" in text and "+2" in text


def test_show_prints_stats_and_seeded_samples(store):
    s = json.loads(cli(store, "show", "colours", "--json", "--samples", "2").stdout)
    assert s["label"] == "colours@v0002" and s["records"] == 6 and s["parent"] == "colours@v0001"
    assert s["methods"] == {"self_instruct": 5, "evol": 1} and s["evol_ops"] == {"deepen": 1}
    assert s["langs"] == {"-": 5, "en": 1}
    assert [(st, n, left) for st, n, left, _ in s["funnel"]] == [("filter", 1, 8), ("judge", 2, 6)]
    assert len(s["samples"]) == 2
    again = json.loads(cli(store, "show", "colours@v2", "--json", "--samples", "2").stdout)["samples"]
    other = json.loads(cli(store, "show", "colours@v2", "--json", "--samples", "2", "--seed", "5").stdout)["samples"]
    assert again == s["samples"] and other != s["samples"]
    text = cli(store, "show", "colours@v1", "--samples", "1").stdout
    assert "colours@v0001" in text and "records 6" in text and "rouge_similar 4" in text and "instruction:" in text
    # a version folder is accepted in place of NAME@vN
    assert json.loads(run_cli(["show", str(store / "colours" / "v0001"), "--json"]).stdout)["label"] == "colours@v0001"


@pytest.mark.parametrize("args,needle", [
    (["show", "colours@v9"], "no version 'v0009'"),
    (["show", "nosuch"], "no dataset 'nosuch'"),
    (["diff", "colours", "v1", "v7"], "no version 'v0007'"),
    (["versions", "colours@v1"], "without @version"),
    (["show", "colours", "--samples", "-1"], "--samples"),
])
def test_bad_input_is_one_error_line(store, args, needle):
    res = cli(store, *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr
    assert res.stdout == ""
