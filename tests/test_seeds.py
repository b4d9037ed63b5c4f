"""Seed files: ours meet the bar, other people's formats load, bad files fail in one clear line."""
from __future__ import annotations

import itertools
import json

import pytest
from rouge_score import rouge_scorer

from conftest import REPO, run_cli
from datagen.errors import DatagenError
from datagen.filters.instruction import InstructionRules
from datagen.store.seeds import load_seeds

SEEDS = REPO / "seeds" / "175.jsonl"


def test_project_seeds_meet_the_spec():
    lines = SEEDS.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines]
    assert len(rows) == 175
    for r in rows:
        assert set(r) == {"id", "name", "instruction", "instances", "is_classification"}
        assert r["instances"] and all(i["output"].strip() for i in r["instances"])
        assert InstructionRules()(r["instruction"]).keep, r["instruction"]
    assert sum(r["is_classification"] for r in rows) >= 25
    assert sum(any(i["input"].strip() for i in r["instances"]) for r in rows) >= 100
    assert len({r["id"] for r in rows}) == len({r["name"] for r in rows}) == 175


def test_project_seeds_no_pair_above_rouge_threshold():
    instructions = [t.instruction for t in load_seeds(SEEDS)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    worst = max((scorer.score(a, b)["rougeL"].fmeasure, a, b) for a, b in itertools.combinations(instructions, 2))
    assert worst[0] <= 0.7, worst


def test_reference_self_instruct_files_load(reference_dir):
    seeds = load_seeds(reference_dir / "self_instruct_seed_tasks.jsonl")
    assert len(seeds) == 175
    assert sum(1 for s in seeds if s.is_classification) == 26
    user = load_seeds(reference_dir / "self_instruct_user_oriented_instructions.jsonl")
    assert len(user) == 252 and all(u.instances for u in user)


def test_alpaca_json_jsonl_and_text_load(tmp_path):
    rows = [{"instruction": "Give two synonyms for happy.", "input": "", "output": "glad, cheerful"},
            {"instruction": "Sum the numbers.", "input": "2, 3", "output": "5"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.txt").write_text("Give two synonyms for happy.\n\nSum the numbers.\n")
    for name in ("a.json", "a.jsonl", "a.txt"):
        seeds = load_seeds(tmp_path / name)
        assert [s.instruction for s in seeds] == [r["instruction"] for r in rows]
    assert load_seeds(tmp_path / "a.jsonl")[1].instances == [{"input": "2, 3", "output": "5"}]


BAD = {
    "missing_instruction.jsonl": ('{"instruction": "Say hi to me now."}\n{"id": "x", "instances": []}\n',
                                  ":2: field 'instruction' is missing"),
    "not_json.jsonl": ('{"instruction": "Say hi to me now."}\n{"instruction": \n', ":2: invalid JSON"),
    "wrong_type.jsonl": ('{"instruction": 5}\n', ":1: field 'instruction' must be a string"),
    "bad_instances.jsonl": ('{"instruction": "Say hi", "instances": {"input": ""}}\n',
                            ":1: field 'instances' must be a list"),
    "no_output.jsonl": ('{"instruction": "Say hi", "instances": [{"input": "x"}]}\n',
                        ":1: field 'output' is missing"),
    "bad_clf.jsonl": ('{"instruction": "Say hi", "instances": [], "is_classification": "yes"}\n',
                      ":1: field 'is_classification' must be true or false"),
    "dup.jsonl": ('{"id": "a", "instruction": "One task here."}\n{"id": "a", "instruction": "Two tasks here."}\n',
                  ":2: field 'id' duplicates 'a'"),
    "empty.jsonl": ("\n\n", "the seed file is empty"),
    "seeds.csv": ("instruction\nhello\n", "unknown seed format '.csv'"),
    "array.json": ('[{"instruction": "ok fine"}, {"input": "no instruction"}]', "record 2: field 'instruction' is missing"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_seed_file_names_file_line_and_field(tmp_path, name):
    content, expected = BAD[name]
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatagenError) as err:
        load_seeds(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_non_utf8_seed_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "fine line here"}\n{"instruction": "caf\xe9 au lait"}\n')
    with pytest.raises(DatagenError, match=r"latin1.jsonl:2: not UTF-8"):
        load_seeds(path)


def test_cli_bad_seeds_exit_2_with_one_line_and_nothing_written(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Tell me a joke about cats."}\n{"instruction": 3}\n')
    out = tmp_path / "out"
    proc = run_cli(["run", "self-instruct", "--seeds", str(bad), "--out", str(out), "--name", "x"])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{bad}:2: field 'instruction' must be a string" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
