"""Dedup and filter chains over existing data: order, explanations, new versions with parents."""
from __future__ import annotations

import json

import pytest

import datagen.methods.curate as curate
from conftest import run_cli
from datagen.errors import DatagenError
from datagen.methods.curate import build_chain, run_chain
from datagen.records import Record


def _records() -> list[Record]:
    base = ["Explain photosynthesis in simple terms.", "Give three tips for saving money on groceries each month.",
            "Write a haiku about the sea at night.", "List the planets of the solar system in order."]
    out = []
    for i in range(300):
        text = base[i % 4] if i % 3 else f"{base[i % 4]} Variant number {i} about topic {i * 7}."
        out.append(Record(instruction=text, output=f"Answer {i % 5}."))
    out.append(Record(instruction="用简单的语言解释光合作用是什么。", output="植物把光变成糖。"))
    out.append(Record(instruction="用简单的语言解释一下光合作用是什么。", output="植物把光变成糖。"))
    return out


CHAIN = ["exact_dedup", {"minhash": {"threshold": 0.7}}, {"rouge": {"threshold": 0.7, "tokenizer": "unicode"}},
         "empty_output"]


def _run(records, chain=CHAIN):
    kept, rejected = [], []
    totals = run_chain(records, build_chain(chain), kept.append, rejected.append)
    return kept, rejected, totals


def test_chunked_chain_equals_record_by_record(monkeypatch):
    kept_a, rej_a, _ = _run(_records())
    monkeypatch.setattr(curate, "CHUNK", 1)
    kept_b, rej_b, _ = _run(_records())
    assert [r.id for r in kept_a] == [r.id for r in kept_b]
    # rejected.jsonl is written step by step within a chunk, so compare the decisions, not the line order
    assert sorted((r["id"], r["stage"], r["reason"]) for r in rej_a) == sorted((r["id"], r["stage"], r["reason"]) for r in rej_b)


def test_every_drop_names_step_reason_and_what_it_collided_with():
    kept, rejected, totals = _run(_records())
    assert totals["in"] == 302 and totals["kept"] + totals["rejected"] == 302 == len(kept) + len(rejected)
    # a duplicate points at the record that step kept; a later step may still have dropped that one
    known = {r.id for r in kept} | {r["id"] for r in rejected}
    for row in rejected:
        assert row["stage"] in ("exact_dedup", "minhash", "rouge", "empty_output") and row["reason"]
        if row["stage"] in ("exact_dedup", "minhash", "rouge"):
            assert row["detail"]["duplicate_of"] in known
    # the two Chinese near-duplicates: only the Unicode tokenizer sees them
    assert any(r["stage"] == "rouge" and "光合作用" in r["text"] for r in rejected)


def test_cjk_passes_with_the_faithful_tokenizer():
    cjk = _records()[-2:]
    kept, _, _ = _run(cjk, [{"rouge": {"tokenizer": "rouge_score"}}])
    assert len(kept) == 2
    kept, _, _ = _run(cjk, [{"rouge": {"tokenizer": "unicode"}}])
    assert len(kept) == 1


@pytest.mark.parametrize("spec,msg", [
    (["nonsense"], "unknown step 'nonsense'"),
    ([{"minhash": {"threshold": 3}}], "threshold"),
    ([{"too_short": {"bogus": 1}}], "bogus"),
    ([], "empty"),
    ([{"a": 1, "b": 2}], "filters[1]"),
])
def test_bad_chain_is_a_user_error(spec, msg):
    with pytest.raises(DatagenError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        build_chain(spec, where="chain.yaml")


@pytest.mark.slow
def test_cli_dedup_filter_why_and_decontaminate(tmp_path, prefect_env):
    data = tmp_path / "data.jsonl"
    rows = [{"instruction": "Explain photosynthesis in simple terms.", "input": "", "output": "Plants make sugar from light."},
            {"instruction": "explain  photosynthesis in simple terms.", "input": "", "output": "Plants make sugar from light."},
            {"instruction": "What is the capital city of France and why did it become the capital?", "input": "",
             "output": "Paris, because the Capetian kings ruled from it and it sat on major trade routes."},
            {"instruction": "As a helper, answer the question.", "input": "Why is the sky blue?",
             "output": "I'm sorry, but as an AI language model I cannot answer that."},
            {"instruction": "Name a prime number larger than ten.", "input": "", "output": "Thirteen is prime."}]
    rows.append(rows[-1])   # a byte-identical copy: same content hash, its own id
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"id": "q17", "question": "What is the capital city of France and why did it "
                                 "become the capital? Answer in one paragraph."}) + "\n")
    out = tmp_path / "out"
    p = run_cli(["dedup", str(data), "--out", str(out), "--name", "mine"], env=prefect_env)
    assert p.returncode == 0, p.stderr[-2000:]
    v1 = out / "mine" / "v0001"
    assert len((v1 / "alpaca.jsonl").read_text().splitlines()) == 4
    chain = tmp_path / "chain.yaml"
    chain.write_text("filters:\n  - refusal\n  - {too_short: {min_output_tokens: 2}}\n")
    p = run_cli(["filter", "mine", "--out", str(out), "--config", str(chain), "--decontaminate", str(evals)],
                env=prefect_env)
    assert p.returncode == 0, p.stderr[-2000:]
    v2 = out / "mine" / "v0002"
    manifest = json.loads((v2 / "manifest.json").read_text())
    assert manifest["parent"] == "mine@v0001"
    assert [f["step"] for f in manifest["filters"]] == ["refusal", "too_short", "decontaminate"]
    rejected = [json.loads(x) for x in (v2 / "rejected.jsonl").read_text().splitlines()]
    assert {(r["stage"], r["reason"]) for r in rejected} == {("refusal", "refusal"), ("decontaminate", "contamination")}
    contaminated = next(r for r in rejected if r["reason"] == "contamination")
    assert contaminated["detail"]["eval_item"] == "q17" and "eval.jsonl" in contaminated["detail"]["eval_file"]
    dup = json.loads((v1 / "rejected.jsonl").read_text().splitlines()[0])
    p = run_cli(["why", "mine@v1", dup["id"][:8], "--out", str(out)], env=prefect_env)
    assert p.returncode == 0, p.stderr
    assert "exact_dedup" in p.stderr and "exact_duplicate" in p.stderr and "Explain photosynthesis" in p.stderr
    copy = json.loads((v1 / "rejected.jsonl").read_text().splitlines()[1])
    assert copy["id"].endswith("-2") and copy["detail"]["duplicate_of"] == copy["id"][:-2]
    p = run_cli(["why", "mine", copy["id"], "--out", str(out)], env=prefect_env)   # LATEST is v0002 now
    assert p.returncode == 0, p.stderr
    assert f"dropped {copy['id']} in mine@v0001" in p.stderr and f"collided with {copy['id'][:-2]}" in p.stderr
    p = run_cli(["why", "mine", "ffffffff", "--out", str(out)], env=prefect_env)
    assert p.returncode == 2 and "no record with id" in p.stderr


@pytest.mark.slow
def test_cli_dedup_reads_a_file_mixing_row_shapes(tmp_path, prefect_env):
    rows = [{"instruction": "Explain photosynthesis in simple terms.", "output": "Plants make sugar from light."},
            {"text": "Describe a sunset over a quiet harbour."},
            {"prompt": "What is the boiling point of water at sea level?", "completion": "100 degrees Celsius."},
            {"messages": [{"role": "user", "content": "Write a haiku about rain."},
                          {"role": "assistant", "content": "Soft rain on the roof."}]},
            {"conversations": [{"from": "human", "value": "Tell me a fact about owls."},
                               {"from": "gpt", "value": "Owls can turn their heads 270 degrees."}]}]
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    p = run_cli(["dedup", str(data), "--out", str(out)], env=prefect_env)
    assert p.returncode == 0, p.stderr[-2000:]
    alpaca = [json.loads(x) for x in (out / "mixed" / "v0001" / "alpaca.jsonl").read_text().splitlines()]
    assert [(r["instruction"], r["output"]) for r in alpaca] == [
        ("Explain photosynthesis in simple terms.", "Plants make sugar from light."),
        ("Describe a sunset over a quiet harbour.", ""),
        ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
        ("Write a haiku about rain.", "Soft rain on the roof."),
        ("Tell me a fact about owls.", "Owls can turn their heads 270 degrees.")]


def test_minhash_keeps_the_best_judged_member_of_each_cluster():
    base = "Give three practical tips for saving money on groceries every single month of the year."
    recs = [Record(instruction=base, output="Plan meals ahead.", scores={"judge": {"score": 3}}),
            Record(instruction=base, output="Plan meals ahead!", scores={"judge": {"score": 9}}),
            Record(instruction="Explain why the sky appears blue during a clear day.", output="Rayleigh scattering.")]
    kept, rejected, _ = _run(recs, [{"minhash": {"keep": "best", "threshold": 0.7}}])
    assert [r.id for r in kept] == [recs[1].id, recs[2].id]
    assert rejected[0]["id"] == recs[0].id and rejected[0]["detail"]["duplicate_of"] == recs[1].id
    kept, _, _ = _run(recs, [{"minhash": {"threshold": 0.7}}])
    assert [r.id for r in kept] == [recs[0].id, recs[2].id]          # default: first seen


def _source(tmp_path, text: str):
    from datagen.store.sources import Source
    path = tmp_path / "data.jsonl"
    path.write_text(text, encoding="utf-8")
    return Source(path=path)


def test_byte_identical_rows_get_ids_of_their_own_and_the_copy_points_at_the_first(tmp_path):
    from datagen.store.sources import iter_records
    row = json.dumps({"instruction": "Name a prime number.", "output": "Seven."}) + "\n"
    source = _source(tmp_path, row + row + json.dumps({"instruction": "Name a colour."}) + "\n" + row)
    ids = [r.id for r in iter_records(source)]
    first = ids[0]
    assert ids == [first, f"{first}-2", ids[2], f"{first}-3"] and len(set(ids)) == 4
    assert [r.id for r in iter_records(source)] == ids           # a rerun assigns the same ids
    kept, rejected, _ = _run(iter_records(source), ["exact_dedup"])
    assert [r.id for r in kept] == [first, ids[2]]
    assert [(r["id"], r["detail"]["duplicate_of"]) for r in rejected] == [(f"{first}-2", first), (f"{first}-3", first)]
    assert all(r["record"]["id"] == r["id"] for r in rejected)


def test_every_known_row_shape_is_read_also_mixed_in_one_file(tmp_path):
    from datagen.store.sources import iter_records
    rows = [{"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
            {"text": "Describe a sunset over the sea."},
            {"prompt": "What is the capital of Peru?", "completion": "Lima."},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
                          {"role": "assistant", "content": "Hello."}]},
            {"conversations": [{"from": "human", "value": "Tell me a joke."}, {"from": "gpt", "value": "No."}]},
            {"instruction": "And now?", "output": "Done.", "history": [["Start.", "Started."]]}]
    got = list(iter_records(_source(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))))
    assert [(r.instruction, r.input, r.output) for r in got] == [
        ("Add the numbers.", "2, 3", "5"), ("Describe a sunset over the sea.", "", ""),
        ("What is the capital of Peru?", "", "Lima."), ("Hi!", "", "Hello."), ("Tell me a joke.", "", "No."),
        ("Start.", "", "Done.")]
    assert got[3].system == "Be brief." and [t["role"] for t in got[3].conversation] == ["user", "assistant"]
    assert [t["content"] for t in got[5].conversation] == ["Start.", "Started.", "And now?", "Done."]


def test_unknown_row_shape_names_file_line_the_fields_found_and_the_shapes_accepted(tmp_path):
    from datagen.store.sources import iter_records
    source = _source(tmp_path, json.dumps({"text": "fine"}) + "\n" + json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DatagenError, match=r"data\.jsonl:2: unknown record shape \(fields: answer, question\); "
                                           r"expected one of: .*ShareGPT.*messages.*prompt.*text"):
        list(iter_records(source))


def test_empty_source_is_an_error_naming_the_file(tmp_path):
    from datagen.store.sources import check_source
    with pytest.raises(DatagenError, match=r"data\.jsonl: nothing to curate"):
        check_source(_source(tmp_path, "\n\n"))
    assert run_chain([], build_chain(["exact_dedup"]), print, print) == {"in": 0, "kept": 0, "rejected": 0}


@pytest.mark.slow
def test_rows_without_any_text_are_dropped_with_a_reason(tmp_path, prefect_env):
    src = tmp_path / "d.jsonl"
    src.write_text('{"messages": []}\n{"text": ""}\n'
                   '{"instruction": "Name a prime number.", "input": "", "output": "Seven."}\n')
    p = run_cli(["dedup", str(src), "--name", "d", "--out", str(tmp_path / "out")], env=prefect_env)
    assert p.returncode == 0, p.stderr[-2000:]
    version = tmp_path / "out" / "d" / "v0001"
    assert len((version / "alpaca.jsonl").read_text().splitlines()) == 1
    rejected = [json.loads(line) for line in (version / "rejected.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejected] == ["empty_record", "empty_record"]
    assert json.loads((version / "manifest.json").read_text())["rejected"]["read"] == {"empty_record": 2}


@pytest.mark.slow
def test_a_chain_that_drops_everything_publishes_nothing(tmp_path, prefect_env):
    src = tmp_path / "en.jsonl"
    src.write_text('{"instruction": "Explain why the sky looks blue on a clear day.", "input": "", '
                   '"output": "Sunlight scatters off air molecules, and blue light scatters the most."}\n')
    chain = tmp_path / "c.yaml"
    chain.write_text("filters:\n  - language: {allowed: [fr]}\n")
    p = run_cli(["filter", str(src), "--config", str(chain), "--name", "fr", "--out", str(tmp_path / "out")],
                env=prefect_env)
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "every one of the 1 records was dropped" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert not list((tmp_path / "out" / "fr").glob("v0*")) and not (tmp_path / "out" / "fr" / "LATEST").exists()


def test_unknown_step_parameter_lists_the_known_ones():
    with pytest.raises(DatagenError, match=r"unknown parameter 'thresh' \(known: threshold"):
        build_chain([{"minhash": {"thresh": 0.5}}])
