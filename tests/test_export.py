"""`datagen export` and the version's own dataset_info.json, read by the consumers' own code: Hugging Face
`datasets` (json/parquet loaders and the card's `configs`) and LLaMA-Factory 0.9.5's dataset parser and
converters. LLaMA-Factory's ShareGPT rules, the split's stability as a dataset grows, and bad input."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")         # nothing here may reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from conftest import run_cli  # noqa: E402
from datagen.records import Record  # noqa: E402
from datagen.store.export import sharegpt_violation  # noqa: E402
from datagen.store.exporting import split_of  # noqa: E402
from datagen.store.manifest import build_manifest, dataset_card  # noqa: E402
from datagen.store.versions import DatasetStore  # noqa: E402

datasets = pytest.importorskip("datasets")


def single(i: int, **kw) -> Record:
    return Record(instruction=f"Write one sentence about the number {i}.", output=f"{i} is a number I like.",
                  method="self_instruct", **kw)


def conv(*turns: tuple[str, str], **kw) -> Record:
    c = [{"role": r, "content": t} for r, t in turns]
    return Record(instruction=next(t for r, t in turns if r == "user"), conversation=c, method="distill", **kw)


MULTI = conv(("system", "Answer briefly."), ("user", "Hi there."), ("assistant", "Hello!"),
             ("user", "Name a colour."), ("assistant", "Blue."))


def publish(out: Path, records: list[Record], name: str = "demo", rejected: list[dict] | None = None) -> Path:
    rejected = rejected or []
    manifest = build_manifest(recipe="self-instruct", config={}, seeds={"path": "seeds/x.jsonl", "sha256": "0" * 64},
                              templates={}, teacher={"model": "tiny-teacher", "host": "127.0.0.1"},
                              counts={"records": len(records)}, timings={}, rejected=rejected, run_id="t",
                              usage=[{"role": "teacher", "prompt_tokens": 120, "completion_tokens": 80,
                                      "total_tokens": 200, "cost_usd": None}],
                              extra={"stages": ["bootstrap", "instances", "filter"]})
    store = DatasetStore(out, name)
    return store.publish(f"run{len(store.versions())}", records, rejected, manifest, dataset_card(name, manifest))


# --- LLaMA-Factory's own parser and converters, without torch -----------------------------------------

@pytest.fixture(scope="module")
def llamafactory():
    """llamafactory.data.parser and .converter, executed as shipped. Their packages' __init__ files
    import the trainer stack (torch, transformers, peft), which this project never installs, so the
    packages are entered without running those __init__ files; the only names taken from that stack
    are five file-name constants (extras/constants.py) and two hub switches (extras/misc.py), given
    here with the values they have there for a local dataset_info.json."""
    spec = importlib.util.find_spec("llamafactory")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llamafactory is not installed (make install puts it in with --no-deps)")
    root = Path(list(spec.submodule_search_locations)[0])
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("llamafactory", "peft", "transformers")}
    made: list[str] = []

    def module(name: str, path: Path | None = None, **attrs) -> None:
        m = types.ModuleType(name)
        if path is not None:
            m.__path__ = [str(path)]
        m.__dict__.update(attrs)
        sys.modules[name] = m
        made.append(name)

    module("llamafactory", root)
    module("llamafactory.extras", root / "extras")
    module("llamafactory.data", root / "data")
    module("llamafactory.extras.misc", use_modelscope=lambda: False, use_openmind=lambda: False)
    for name, attrs in (("peft", {}), ("peft.utils", {"SAFETENSORS_WEIGHTS_NAME": "adapter_model.safetensors",
                                                       "WEIGHTS_NAME": "adapter_model.bin"}),
                        ("transformers", {}), ("transformers.utils", {
                            "SAFE_WEIGHTS_INDEX_NAME": "model.safetensors.index.json",
                            "SAFE_WEIGHTS_NAME": "model.safetensors", "WEIGHTS_INDEX_NAME": "pytorch_model.bin.index.json",
                            "WEIGHTS_NAME": "pytorch_model.bin"})):
        try:
            importlib.import_module(name)
        except ImportError:
            module(name, **attrs)
    try:
        parser = importlib.import_module("llamafactory.data.parser")
        converter = importlib.import_module("llamafactory.data.converter")
        for name in made:      # the constants are bound; `datasets` must not see a stand-in transformers
            if name.split(".")[0] in ("peft", "transformers"):
                del sys.modules[name]
        yield SimpleNamespace(parser=parser, converter=converter)
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("llamafactory", "peft", "transformers")]:
            del sys.modules[k]
        sys.modules.update(saved)


def lf_load(lf, dataset_dir: Path, entry: str, cache: Path) -> list[dict]:
    """What LLaMA-Factory does with `dataset: <entry>` and `dataset_dir: <dir>`: parse the entry, load
    the file with `datasets`, align every row with the entry's converter."""
    (attr,) = lf.parser.get_dataset_list([entry], str(dataset_dir))
    path = dataset_dir / attr.dataset_name
    ds = datasets.load_dataset("parquet" if path.suffix == ".parquet" else "json", data_files=str(path),
                               split="train", cache_dir=str(cache))
    data_args = SimpleNamespace(media_dir=str(dataset_dir), streaming=False, preprocessing_num_workers=None,
                                overwrite_cache=True)
    aligned = lf.converter.align_dataset(ds, attr, data_args, SimpleNamespace(local_process_index=0))
    return list(aligned)


def turns_of(row: dict) -> list[tuple[str, str]]:
    return [(t["role"], t["content"]) for t in row["_prompt"] + row["_response"]]


def expected_turns(r: Record) -> list[tuple[str, str]]:
    if r.conversation:
        return [(t["role"], t["content"]) for t in r.conversation if t["role"] != "system"]
    return [("user", r.instruction + (f"\n\n{r.input}" if r.input else "")), ("assistant", r.output)]


def lf_text(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # LLaMA-Factory's alpaca converter joins instruction and input with one newline, the other shapes
    # carry our "\n\n"; compare the words, not that separator
    return [(role, " ".join(text.split())) for role, text in turns]


# --- the published version's dataset_info.json -------------------------------------------------------------

@pytest.mark.parametrize("records", [
    pytest.param([single(i) for i in range(4)], id="no-system-column"),
    pytest.param([single(0), single(1, system="Be kind."), MULTI], id="system-and-history"),
])
def test_every_entry_of_a_published_version_converts_in_llamafactory(tmp_path, llamafactory, records):
    vdir = publish(tmp_path / "out", records)
    info = json.loads((vdir / "dataset_info.json").read_text())
    assert set(info) == {"demo", "demo_sharegpt", "demo_messages"}
    for entry in info:
        rows = lf_load(llamafactory, vdir, entry, tmp_path / "cache")
        assert len(rows) == len(records), entry
        for r, row in zip(records, rows):
            assert lf_text(turns_of(row)) == lf_text(expected_turns(r)), entry     # history kept, nothing skipped
            # a row without the column reads as None where other rows have it; LLaMA-Factory's template
            # then uses its default system prompt, as for ""
            assert (row["_system"] or "") == (r.system or (r.conversation[0]["content"] if r.conversation else "")), entry


# --- datagen export ---------------------------------------------------------------------------------------

def export(out: Path, dest: Path, *args: str, spec: str = "demo"):
    return run_cli(["export", spec, "--out", str(out), "--dest", str(dest), *args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    records = [single(i) for i in range(40)] + [single(100, system="Be kind."), MULTI,
                                                Record(instruction="Add.", input="2 and 3", output="5")]
    rejected = [{"stage": "filter", "reason": "rouge_similar", "id": "x", "text": "t", "detail": {}}] * 3 \
        + [{"stage": "instances", "reason": "empty_output", "id": "y", "text": "t", "detail": {}}] * 2
    publish(tmp / "out", records, rejected=rejected)
    res = export(tmp / "out", tmp / "dest", "--val", "0.25", "--seed", "7")
    assert res.returncode == 0, res.stderr
    return SimpleNamespace(dest=tmp / "dest", records={r.id: r for r in records}, tmp=tmp,
                           summary=json.loads((tmp / "dest" / "export.json").read_text()))


def test_export_writes_each_format_per_split_loadable_by_datasets(exported):
    dest, summary = exported.dest, exported.summary
    assert summary["counts"]["train"] + summary["counts"]["validation"] == len(exported.records)
    assert summary["counts"]["validation"] > 0 and summary["counts"]["train"] > 0
    key = {"alpaca": "output", "sharegpt": "conversations", "messages": "messages", "parquet": "messages"}
    for fmt in ("alpaca", "sharegpt", "messages", "parquet"):
        for split in ("train", "validation"):
            path = dest / summary["files"][fmt][split]
            ds = datasets.load_dataset("parquet" if fmt == "parquet" else "json", data_files=str(path), split="train",
                                       cache_dir=str(exported.tmp / "cache"))
            assert len(ds) == summary["counts"][split], (fmt, split)
            assert key[fmt] in ds.column_names
            for row in ds:
                assert split_of(row["id"], 7, 0.25) == split
                r = exported.records[row["id"]]
                if fmt in ("messages", "parquet"):
                    assert row["messages"][-1] == {"role": "assistant",
                                                   "content": r.conversation[-1]["content"] if r.conversation else r.output}


def test_card_front_matter_and_configs_load_through_datasets(exported):
    text = (exported.dest / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "other" and meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"] and "en" in meta["language"]
    assert {"synthetic", "self-instruct", "distillation"} <= set(meta["tags"])
    # parquet is not a config next to JSONL ones: load_dataset(DIR) reads a folder with one file reader
    assert [c["config_name"] for c in meta["configs"]] == ["alpaca", "sharegpt", "messages"]
    for cfg in meta["configs"]:
        dd = datasets.load_dataset(str(exported.dest), cfg["config_name"], cache_dir=str(exported.tmp / "cache"))
        assert {k: len(v) for k, v in dd.items()} == exported.summary["counts"], cfg["config_name"]
    body = text.split("---\n", 2)[2]
    assert "tiny-teacher" in body and "| filter | 3 |" in body and "| instances | 2 |" in body
    assert f"{len(exported.records) + 5} candidates, {len(exported.records)} kept" in body


def test_every_exported_entry_converts_in_llamafactory(exported, llamafactory):
    info = json.loads((exported.dest / "dataset_info.json").read_text())
    assert {e["formatting"] for e in info.values()} == {"alpaca", "sharegpt"}
    assert len(info) == 8        # four formats, train and validation
    for entry, spec in info.items():
        rows = lf_load(llamafactory, exported.dest, entry, exported.tmp / "cache")
        split = "validation" if entry.endswith("_validation") else "train"
        assert len(rows) == exported.summary["counts"][split], entry
        ids = [json.loads(x)["id"] for x in (exported.dest / spec["file_name"]).read_text().splitlines()] \
            if spec["file_name"].endswith(".jsonl") else None
        for i, row in enumerate(rows):
            assert row["_prompt"] and row["_response"], entry          # LLaMA-Factory skipped nothing
            if ids:
                r = exported.records[ids[i]]
                assert lf_text(turns_of(row)) == lf_text(expected_turns(r)), entry


def test_axolotl_snippet_names_files_with_messages(exported):
    cfg = yaml.safe_load((exported.dest / "axolotl.yaml").read_text())
    for key in ("datasets", "test_datasets"):
        (d,) = cfg[key]
        assert d["type"] == "chat_template" and d["field_messages"] == "messages"
        ds = datasets.load_dataset(d["ds_type"], data_files=str(exported.dest / d["path"]), split=d["split"],
                                   cache_dir=str(exported.tmp / "cache"))
        roles = {t[d["message_property_mappings"]["role"]] for row in ds for t in row["messages"]}
        assert roles <= {"system", "user", "assistant"} and "assistant" in roles


# --- LLaMA-Factory's ShareGPT rules -------------------------------------------------------------------------

def test_sharegpt_rule_positions_count_and_system():
    h, g = {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}
    assert sharegpt_violation([h, g]) is None
    assert sharegpt_violation([{"from": "system", "value": "s"}, h, g, h, g]) is None
    assert sharegpt_violation([h, {"from": "function_call", "value": "f"}, {"from": "observation", "value": "o"}, g]) is None
    assert "turn 1 is 'gpt'" in sharegpt_violation([g, h])
    assert "turn 2 is 'human'" in sharegpt_violation([h, h])
    assert "3 turns; an even number" in sharegpt_violation([h, g, h])
    assert "system turn may only come first" in sharegpt_violation([h, {"from": "system", "value": "s"}, h, g])
    assert sharegpt_violation([{"from": "system", "value": "s"}]) == "no human/gpt turns"


def test_single_and_multi_turn_export_without_loss(tmp_path, llamafactory):
    records = [single(1), single(2, system="Be kind."), MULTI,
               conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e"), ("assistant", "f"))]
    publish(tmp_path / "out", records)
    res = export(tmp_path / "out", tmp_path / "dest", "--format", "sharegpt", "--val", "0")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == \
        ["README.md", "axolotl.yaml", "dataset_info.json", "export.json", "sharegpt"]
    assert not (tmp_path / "dest" / "sharegpt" / "validation.jsonl").exists()
    rows = lf_load(llamafactory, tmp_path / "dest", "demo_sharegpt", tmp_path / "cache")
    assert [len(turns_of(r)) for r in rows] == [2, 2, 4, 6]
    assert [r["_system"] for r in rows] == ["", "Be kind.", "Answer briefly.", ""]


BROKEN = {
    "two-user-turns": (("user", "a"), ("user", "b")),
    "odd-count": (("user", "a"), ("assistant", "b"), ("user", "c")),
    "assistant-first": (("assistant", "a"), ("user", "b")),
    "system-in-the-middle": (("user", "a"), ("system", "s"), ("assistant", "b"), ("user", "c")),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_row_llamafactory_would_skip_is_an_error_naming_it(tmp_path, llamafactory, case):
    bad = conv(*BROKEN[case])
    vdir = publish(tmp_path / "out", [single(1), bad])
    # what LLaMA-Factory does with the row in the version's own files: it is not trained on
    rows = lf_load(llamafactory, vdir, "demo_messages", tmp_path / "cache")
    assert rows[0]["_response"] and not rows[1]["_response"]
    res = export(tmp_path / "out", tmp_path / "new" / "dest")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert bad.id in lines[0] and "records.jsonl:2" in lines[0] and "ShareGPT rules" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]     # not even the parent folder


# --- the split ----------------------------------------------------------------------------------------------

def _splits(dest: Path) -> dict[str, str]:
    return {json.loads(x)["id"]: split for split in ("train", "validation")
            for x in (dest / "messages" / f"{split}.jsonl").read_text().splitlines()}


def test_split_is_stable_when_a_version_grows(tmp_path):
    first = [single(i) for i in range(150)]
    publish(tmp_path / "out", first)
    publish(tmp_path / "out", first[::-1] + [single(i) for i in range(150, 400)])   # v2: reordered, grown
    for v in ("1", "2"):
        assert export(tmp_path / "out", tmp_path / f"e{v}", "--format", "messages", "--val", "0.1",
                      spec=f"demo@v{v}").returncode == 0
    s1, s2 = _splits(tmp_path / "e1"), _splits(tmp_path / "e2")
    assert len(s1) == 150 and len(s2) == 400
    assert all(s2[k] == s1[k] for k in s1)
    n_val = sum(v == "validation" for v in s2.values())
    assert 10 <= n_val <= 80                  # about 10% of 400
    assert export(tmp_path / "out", tmp_path / "e3", "--format", "messages", "--val", "0.1", "--seed", "1",
                  spec="demo@v2").returncode == 0
    assert _splits(tmp_path / "e3") != s2     # the seed changes which records are held out


# --- bad input: one error line, exit 2, nothing written ----------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--format", "csv"], "--format: unknown format 'csv'"),
    (["--format", "alpaca,jsonl"], "--format: unknown format 'jsonl'"),
    (["--val", "1.5"], "--val: 1.5"),
    (["--val", "-0.1"], "--val: -0.1"),
    (["--val", "nan"], "--val: nan"),
    (["--seed", "abc"], "--seed"),
    (["--seed", "-3"], "--seed: -3"),
    (["--license", "two words"], "--license"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_flags(tmp_path, args, needle):
    publish(tmp_path / "out", [single(1)])
    res = export(tmp_path / "out", tmp_path / "dest", *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert needle in lines[0]
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("spec,needle", [("demo@v7", "no version 'v0007'"), ("nosuch", "no dataset 'nosuch'"),
                                         ("nosuch@v1", "no dataset 'nosuch'")])
def test_a_version_that_does_not_exist(tmp_path, spec, needle):
    publish(tmp_path / "out", [single(1)])
    res = export(tmp_path / "out", tmp_path / "dest", spec=spec)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr
    assert not (tmp_path / "dest").exists()


def test_destination_rules(tmp_path):
    vdir = publish(tmp_path / "out", [single(1), single(2)])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    res = export(tmp_path / "out", dest)
    assert res.returncode == 2 and "not empty (add --force" in res.stderr
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]
    res = export(tmp_path / "out", tmp_path / "out" / "demo" / "exp")
    assert res.returncode == 2 and "inside the dataset's store folder" in res.stderr
    assert not (tmp_path / "out" / "demo" / "exp").exists()
    # a version folder and a dataset folder name the dataset too; --force replaces the old export
    assert export(tmp_path / "out", dest, "--force", spec=str(vdir)).returncode == 0
    assert not (dest / "mine.txt").exists() and (dest / "messages" / "train.jsonl").exists()
    assert export(tmp_path / "out", tmp_path / "d2", spec=str(tmp_path / "out" / "demo")).returncode == 0
    assert json.loads((tmp_path / "d2" / "export.json").read_text())["version"] == "v0001"
    assert not list(tmp_path.glob(".dest*")) and not list(tmp_path.glob(".d2*"))


def test_parquet_only_export_is_the_cards_config(tmp_path):
    publish(tmp_path / "out", [single(i) for i in range(30)] + [MULTI])
    assert export(tmp_path / "out", tmp_path / "dest", "--format", "parquet", "--val", "0.2").returncode == 0
    meta = yaml.safe_load((tmp_path / "dest" / "README.md").read_text().split("---\n")[1])
    assert [c["config_name"] for c in meta["configs"]] == ["parquet"]
    dd = datasets.load_dataset(str(tmp_path / "dest"), "parquet", cache_dir=str(tmp_path / "cache"))
    counts = json.loads((tmp_path / "dest" / "export.json").read_text())["counts"]
    assert {k: len(v) for k, v in dd.items()} == counts and sum(counts.values()) == 31
    assert sorted(dd["train"].column_names) == ["id", "lang", "messages", "method"]


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from datagen.store import exporting
    from datagen.store.refs import resolve_version

    publish(tmp_path / "out", [single(i) for i in range(5)])

    def broken_card(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("datagen.store.card.export_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        exporting.export_version(resolve_version("demo", tmp_path / "out"), tmp_path / "x" / "dest", ["messages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
