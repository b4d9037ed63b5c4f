"""`datagen why` on a real store: exact copies are told apart, and a record dropped in an earlier
version is found there after later filter runs moved LATEST on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from datagen.methods.curate import build_chain, run_chain
from datagen.store.sources import Source, iter_records
from datagen.store.versions import DatasetStore

ROWS = [{"instruction": "Name a prime number larger than ten.", "output": "Thirteen."},
        {"instruction": "Name a prime number larger than ten.", "output": "Thirteen."},
        {"instruction": "Give a synonym for happy.", "output": "Joyful."},
        {"instruction": "Explain how vaccines work.", "output": "I'm sorry, but I cannot help with that."}]


def _publish(out: Path, source: Source, chain: list, parent: str | None) -> Path:
    """What the curate flow does, without Prefect: stream the source through the chain into a version."""
    store = DatasetStore(out, "mine")
    with store.open_version(f"run-{len(store.versions())}") as w:
        run_chain(iter_records(source), build_chain(chain), w.add, w.reject)
        return w.publish({"recipe": "filter", "parent": parent, "counts": {}}, "mine {{version}}\n")


@pytest.fixture
def store(tmp_path) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "out"
    v1 = _publish(out, Source(path=data), ["exact_dedup"], None)
    _publish(out, Source(v1 / "records.jsonl", "mine", "v0001", out), ["refusal"], "mine@v0001")
    ids = [r.id for r in iter_records(Source(path=data))]
    return out, {"prime": ids[0], "copy": ids[1], "refusal": ids[3]}


def _why(out: Path, *args: str):
    return run_cli(["why", *args, "--out", str(out)], timeout=120)


def test_a_copy_dropped_in_an_earlier_version_is_found_there_and_told_apart_from_the_kept_one(store):
    out, ids = store
    assert (out / "mine" / "LATEST").read_text().strip() == "v0002"
    p = _why(out, "mine", ids["copy"])
    assert p.returncode == 0, p.stderr
    assert f"dropped {ids['copy']} in mine@v0001" in p.stderr and "not in mine@v0002" in p.stderr
    assert "exact_duplicate" in p.stderr and f"collided with {ids['prime']}" in p.stderr
    p = _why(out, "mine", ids["prime"])
    assert p.returncode == 0 and f"kept {ids['prime']} in mine@v0002" in p.stderr, p.stderr


def test_the_latest_decision_wins_and_a_version_can_be_named(store):
    out, ids = store
    p = _why(out, "mine", ids["refusal"][:8])
    assert p.returncode == 0 and "in mine@v0002" in p.stderr and "refusal" in p.stderr, p.stderr
    p = _why(out, "mine@v1", ids["refusal"][:8])
    assert p.returncode == 0 and f"kept {ids['refusal']} in mine@v0001" in p.stderr, p.stderr


def test_a_short_prefix_shared_by_copies_is_ambiguous_and_the_suffix_picks_one(store):
    out, ids = store
    p = _why(out, "mine@v1", ids["prime"][:8])
    assert p.returncode == 2 and "ambiguous" in p.stderr and ids["copy"] in p.stderr, p.stderr
    p = _why(out, "mine@v1", ids["prime"][:8] + "-2")
    assert p.returncode == 0 and f"dropped {ids['copy']}" in p.stderr, p.stderr


def test_versions_outside_the_lineage_are_searched_too(store, tmp_path):
    out, ids = store
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"instruction": "Something else entirely."}) + "\n", encoding="utf-8")
    _publish(out, Source(path=other), ["exact_dedup"], None)      # v0003: LATEST, no parent
    p = _why(out, "mine", ids["copy"])
    assert p.returncode == 0 and "in mine@v0001" in p.stderr and "not in mine@v0003, mine@v0002" in p.stderr, p.stderr
    p = _why(out, "mine", "ffffffff")
    assert p.returncode == 2 and "in mine@v0003, mine@v0002, mine@v0001" in p.stderr, p.stderr
