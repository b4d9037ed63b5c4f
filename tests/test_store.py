"""Versioned store: numbered immutable versions, atomic publish, formats trainers accept."""
from __future__ import annotations

import json
import threading

import pytest

from datagen.errors import DatagenError
from datagen.records import Record
from datagen.store.export import to_alpaca, to_messages, to_sharegpt
from datagen.store.versions import DatasetStore

RECORDS = [Record(instruction="Add the numbers.", input="2, 3", output="5", method="self_instruct"),
           Record(instruction="Say hello politely.", output="Hello, nice to meet you.", system="Be kind.")]


def _publish(store, run_id="r1", records=RECORDS, rejected=()):
    return store.publish(run_id, list(records), list(rejected), {"counts": {"records": len(records)}}, "# card {{version}}\n")


def test_publish_twice_gives_next_version_and_latest(tmp_path):
    store = DatasetStore(tmp_path, "demo")
    v1 = _publish(store, "a", rejected=[{"stage": "s", "reason": "r", "detail": {}, "text": "t"}])
    v2 = _publish(store, "b")
    assert (v1.name, v2.name) == ("v0001", "v0002")
    assert (tmp_path / "demo" / "LATEST").read_text().strip() == "v0002"
    assert store.versions() == ["v0001", "v0002"]
    assert not any((tmp_path / "demo" / ".runs").iterdir())   # staging cleaned up
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert manifest["version"] == "v0001" and manifest["files"]["rejected.jsonl"] == 1
    assert (v1 / "README.md").read_text() == "# card v0001\n"
    for name in ("alpaca.jsonl", "sharegpt.jsonl", "messages.jsonl", "records.jsonl"):
        rows = [json.loads(x) for x in (v1 / name).read_text().splitlines()]
        assert len(rows) == 2
    assert [Record.from_dict(json.loads(x)) for x in (v1 / "records.jsonl").read_text().splitlines()] == RECORDS
    info = json.loads((v1 / "dataset_info.json").read_text())
    assert info["demo"]["file_name"] == "alpaca.jsonl"


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    store = DatasetStore(tmp_path, "demo")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(_publish(DatasetStore(tmp_path, "demo"), f"r{i}").name))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [f"v{i:04d}" for i in range(1, 7)]
    assert store.versions() == sorted(results)


@pytest.mark.parametrize("bad", ["../x", "../../etc", "a/b", "", ".hidden", "x" * 101, ".."])
def test_dataset_names_cannot_escape_outputs(tmp_path, bad):
    with pytest.raises(DatagenError, match="--name"):
        DatasetStore(tmp_path, bad)


def test_export_shapes():
    r = RECORDS[0]
    assert to_alpaca(r) == {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"}
    assert to_sharegpt(r)["conversations"] == [{"from": "human", "value": "Add the numbers.\n\n2, 3"},
                                               {"from": "gpt", "value": "5"}]
    assert to_messages(RECORDS[1])["messages"] == [{"role": "system", "content": "Be kind."},
                                                   {"role": "user", "content": "Say hello politely."},
                                                   {"role": "assistant", "content": "Hello, nice to meet you."}]


def test_multi_turn_exports_history():
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    r = Record(instruction="Hi", conversation=conv, method="distill")
    assert to_alpaca(r) == {"instruction": "Name a colour.", "input": "", "output": "Blue.", "history": [["Hi", "Hello!"]]}
    assert [t["from"] for t in to_sharegpt(r)["conversations"]] == ["human", "gpt", "human", "gpt"]


def test_record_id_is_stable_content_hash():
    a = Record(instruction="x y z", output="1")
    assert a.id == Record(instruction="x y z", output="1", round=3).id
    assert a.id != Record(instruction="x y z", output="2").id


def test_publish_if_latest_refuses_when_another_version_landed_first(tmp_path):
    """A run continuing v1 must not publish after another run's v2: it would leave v2's records out."""
    from datagen.store.versions import StaleLatest

    store = DatasetStore(tmp_path, "grow")
    store.publish("r1", [Record(instruction="one")], [], {"recipe": "t"}, "# {{version}}\n")
    store.publish("r2", [Record(instruction="two")], [], {"recipe": "t"}, "# {{version}}\n")
    with pytest.raises(StaleLatest) as e:
        store.publish("r3", [Record(instruction="one"), Record(instruction="three")], [], {"recipe": "t"},
                      "# {{version}}\n", if_latest="v0001")
    assert "grow@v0002 was published while this run extended grow@v0001" in str(e.value)
    assert store.versions() == ["v0001", "v0002"] and store.latest() == "v0002"
    path = store.publish("r4", [Record(instruction="three")], [], {"recipe": "t"}, "# {{version}}\n", if_latest="v0002")
    assert path.name == "v0003" and store.latest() == "v0003"
