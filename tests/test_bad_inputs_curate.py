"""The bad-input corpus for `dedup`, `filter` and `why`: every mistake in a source, a flag or a filter
chain gives one `error:` line naming file:line, field or flag, exit 2, no traceback, and publishes nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import run_cli
from datagen.records import Record
from datagen.store.versions import DatasetStore

ROW = json.dumps({"instruction": "Name three colours of the rainbow.", "input": "", "output": "Red, orange, yellow."})


def _write(tmp: Path, name: str, data: bytes | str) -> Path:
    p = tmp / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def _dedup_file(name, content, *flags):
    return lambda tmp: ["dedup", str(_write(tmp, name, content)), *flags]


def _dedup_flags(*flags):
    return lambda tmp: ["dedup", str(_write(tmp, "data.jsonl", ROW + "\n")), *flags]


def _chain(yaml_text: str | bytes):
    return lambda tmp: ["filter", "mine", "--config", str(_write(tmp, "c.yaml", yaml_text))]


def _step(step: str):
    return _chain(f"filters:\n  - {step}\n")


def _folder(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    return tmp / "folder"


def _fifo(tmp: Path) -> Path:
    """A named pipe: reading it would block forever, so it must be refused, not opened."""
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


# name -> (args builder, expected fragment of the error line)
CASES = {
    # --- sources
    "missing_file": (lambda tmp: ["dedup", str(tmp / "nope.jsonl")], "nope.jsonl: file not found"),
    "empty_jsonl": (_dedup_file("empty.jsonl", ""), "empty.jsonl: nothing to curate"),
    "blank_lines_only": (_dedup_file("blank.jsonl", "\n  \n\n"), "blank.jsonl: nothing to curate"),
    "empty_txt": (_dedup_file("empty.txt", ""), "empty.txt: nothing to curate"),
    "empty_json_array": (_dedup_file("empty.json", "[]"), "empty.json: nothing to curate"),
    "json_not_a_list": (_dedup_file("d.json", ROW), "d.json: expected a JSON array of records, got a dict"),
    "json_invalid": (_dedup_file("d.json", "[\n" + ROW + ",\n}"), "d.json:3: invalid JSON"),
    "lone_surrogate_dedup": (_dedup_file("s.jsonl", ROW + "\n" + '{"instruction": "bad \\ud800 text"}\n'),
                             "s.jsonl:2: field 'instruction' holds an unpaired surrogate"),
    "lone_surrogate_filter": (lambda tmp: ["filter", str(_write(tmp, "s.jsonl", '{"text": "x \\udc00"}\n'))],
                              "s.jsonl:1: field 'text' holds an unpaired surrogate"),
    "json_non_utf8": (_dedup_file("d.json", b'[{"instruction": "caf\xe9"}]'), "d.json: not UTF-8"),
    "invalid_json_line": (_dedup_file("d.jsonl", '{"instruction": "x",\n'), "d.jsonl:1: invalid JSON"),
    "non_utf8_line": (_dedup_file("d.jsonl", b'{"instruction": "caf\xe9"}\n'), "d.jsonl:1: not UTF-8"),
    "unknown_shape": (_dedup_file("d.jsonl", '{"question": "q", "answer": "a"}\n'),
                      "d.jsonl:1: unknown record shape (fields: answer, question); expected one of: instruction"),
    "row_not_object": (_dedup_file("d.jsonl", '[1, 2]\n'), "d.jsonl:1: expected a JSON object, got list"),
    "mistyped_field": (_dedup_file("d.jsonl", '{"instruction": ["a"]}\n'), "d.jsonl:1: field 'instruction' must be a string"),
    "bad_turn_role": (_dedup_file("d.jsonl", '{"messages": [{"role": "robot", "content": "hi"}]}\n'),
                      "d.jsonl:1: messages[0]: unknown role 'robot'"),
    "turns_not_list": (_dedup_file("d.jsonl", '{"conversations": "hi"}\n'), "field 'conversations' must be a list"),
    "unknown_suffix": (_dedup_file("d.csv", "a,b\n"), "d.csv: unknown format '.csv'"),
    "folder_without_versions": (lambda tmp: ["dedup", str(_folder(tmp))], "folder is neither a dataset"),
    "unknown_dataset": (lambda tmp: ["dedup", "nosuch"], "no dataset 'nosuch'"),
    "bad_version": (lambda tmp: ["dedup", "mine@vx"], "mine@vx: version 'vx' is not a version number"),
    "missing_version": (lambda tmp: ["dedup", "mine@v9"], "no version 'v0009'"),
    "bad_dataset_name": (lambda tmp: ["dedup", "bad name@v1"], "'bad name' is not a dataset name"),
    "file_stem_not_a_name": (_dedup_file("my data.jsonl", ROW + "\n"), "--name: the file name 'my data'"),
    # --- dedup flags
    "bad_shingle": (_dedup_flags("--shingle", "sentence"), "--shingle: 'sentence' is not one of word, char"),
    "rouge_threshold_range": (_dedup_flags("--rouge", "--rouge-threshold", "5"), "--rouge-threshold: 5.0 is not in [0, 1]"),
    "huge_num_perm": (_dedup_flags("--num-perm", "100000000"), "--num-perm: 100000000 is more than 1024"),
    "missing_eval_file": (_dedup_flags("--decontaminate", "nope.jsonl"), "--decontaminate: nope.jsonl: eval file not found"),
    "everything_off": (_dedup_flags("--no-exact", "--no-minhash"), "every method is switched off"),
    "bad_name": (_dedup_flags("--name", "../x"), "--name: '../x' is not a valid dataset name"),
    # --- filter chain YAML
    "unknown_step": (_step("exact_dedupe"), "c.yaml: filters[1]: unknown step 'exact_dedupe'"),
    "minhash_threshold_range": (_step("minhash: {threshold: 3}"), "c.yaml: filters[1]: minhash threshold: 3"),
    "minhash_threshold_type": (_step("minhash: {threshold: high}"), "minhash threshold: 'high' must be a number"),
    "minhash_num_perm_type": (_step("minhash: {num_perm: many}"), "minhash num_perm: 'many' must be an integer"),
    "minhash_num_perm_huge": (_step("minhash: {num_perm: 10000000}"), "minhash num_perm: 10000000 must be an integer from 2 to 1024"),
    "minhash_shingle": (_step("minhash: {shingle: sentence}"), "minhash shingle: 'sentence' must be one of word, char"),
    "minhash_shingle_size": (_step("minhash: {shingle_size: '3'}"), "minhash shingle_size: '3' must be an integer"),
    "minhash_keep": (_step("minhash: {keep: worst}"), "keep must be 'first' or 'best'"),
    "rouge_threshold_type": (_step("rouge: {threshold: abc}"), "rouge threshold must be a number, got 'abc'"),
    "rouge_threshold_above_one": (_step("rouge: {threshold: 7}"), "rouge threshold must be <= 1"),
    "rouge_tokenizer": (_step("rouge: {tokenizer: klingon}"), "unknown ROUGE tokenizer 'klingon'"),
    "rouge_field": (_step("rouge: {field: title}"), "field must be instruction, input or output"),
    "exact_fields": (_step("exact_dedup: {fields: [instrution]}"), "instrution"),
    "too_short_type": (_step("too_short: {min_output_tokens: '3'}"), "filters[1]: filter 'too_short': min_output_tokens must be an integer"),
    "too_long_negative": (_step("too_long: {max_tokens: -1}"), "max_tokens must be a non-negative number"),
    "unknown_param": (_step("too_short: {bogus: 1}"), "unexpected keyword argument 'bogus'"),
    "repetition_type": (_step("repetition: {dup_ngram_max: 5}"), "dup_ngram_max must be a mapping"),
    "refusal_regex": (_step("refusal: {extra_patterns: ['(']}"), "bad refusal pattern"),
    "mismatch_bool": (_step("language_mismatch: {allow_translation: 'yes'}"), "allow_translation must be true or false"),
    "language_unknown_code": (_step("language: {allowed: [xx-nope]}"), "filters[1]: filter 'language': allowed: unknown language code 'xx-nope'"),
    "language_allowed_type": (_step("language: {allowed: 5}"), "allowed must be a string or a list of strings"),
    "language_field": (_step("language: {fields: [title]}"), "fields: unknown field 'title'"),
    "decontaminate_no_paths": (_step("decontaminate: {paths: []}"), "paths must not be empty"),
    "decontaminate_paths_type": (_step("decontaminate: {paths: 5}"), "paths must be a string or a list of strings"),
    "decontaminate_missing_file": (_step("decontaminate: {paths: [evals/nope.jsonl]}"), "nope.jsonl: eval file not found"),
    "decontaminate_n": (_step("decontaminate: {paths: [c.yaml], n: 0}"), "n must be a positive integer, got 0"),
    "params_not_mapping": (_step("minhash: 5"), "filters[1] 'minhash': parameters must be a mapping"),
    "step_not_name": (_step("[a, b]"), "filters[1]: expected a name or {name: {params}}"),
    "filters_not_list": (_chain("filters: refusal\n"), "c.yaml: expected `filters:` with a list of steps"),
    "no_filters_key": (_chain("filtres: [refusal]\n"), "c.yaml: expected `filters:` with a list of steps"),
    "empty_chain": (_chain("filters: []\n"), "the filter chain is empty"),
    "bad_yaml": (_chain("filters:\n  - minhash: {threshold: [0.8\n"), "c.yaml:3: invalid YAML"),
    "config_non_utf8": (_chain(b"filters:\n  - refusal # caf\xe9\n"), "c.yaml: not UTF-8"),
    "config_missing": (lambda tmp: ["filter", "mine", "--config", str(tmp / "none.yaml")], "none.yaml: config file not found"),
    "config_is_folder": (lambda tmp: ["filter", "mine", "--config", str(_folder(tmp))], "folder is not a regular YAML file"),
    "config_is_a_pipe": (lambda tmp: ["filter", "mine", "--config", str(_fifo(tmp))], "fifo is not a regular YAML file"),
    "source_is_a_pipe": (lambda tmp: ["dedup", str(_fifo(tmp))], "fifo: not a regular file or folder"),
    "eval_file_is_a_pipe": (_dedup_flags("--decontaminate", "fifo"), "--decontaminate: fifo: eval file not found"),
    "filter_eval_flag_missing": (lambda tmp: ["filter", "mine", "--decontaminate", "nope.jsonl"], "--decontaminate: nope.jsonl"),
    # --- why
    "why_unknown_dataset": (lambda tmp: ["why", "nosuch", "abcdef12"], "no dataset 'nosuch'"),
    "why_bad_version": (lambda tmp: ["why", "mine@latest", "abcdef12"], "version 'latest' is not a version number"),
    "why_missing_version": (lambda tmp: ["why", "mine@v7", "abcdef12"], "no version 'v0007'"),
    "why_bad_name": (lambda tmp: ["why", "../mine", "abcdef12"], "'../mine' is not a dataset name"),
    "why_short_id": (lambda tmp: ["why", "mine", "abc"], "give at least 4 characters"),
    "why_unknown_id": (lambda tmp: ["why", "mine", "ffffffff"], "no record with id starting 'ffffffff'"),
}


def _published(out: Path) -> set[Path]:
    return set(out.glob("*/v0*"))


@pytest.fixture
def out(tmp_path) -> Path:
    """OUT holding one published dataset, 'mine@v0001', for the cases that read or extend it."""
    out = tmp_path / "out"
    store = DatasetStore(out, "mine")
    with store.open_version("setup") as w:
        w.add(Record(instruction="Name three colours of the rainbow.", output="Red, orange, yellow."))
        w.publish({"recipe": "dedup", "parent": None, "counts": {}}, "mine {{version}}\n")
    return out


def _assert_one_error_line(proc, expected: str, out: Path, before: set[Path]) -> None:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert expected in errors[0], errors[0]
    assert _published(out) == before, "something was published"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_curate_input_gives_one_clear_line(tmp_path, out, case):
    build, expected = CASES[case]
    before = _published(out)
    proc = run_cli([*build(tmp_path), "--out", str(out)], cwd=tmp_path, timeout=120)
    _assert_one_error_line(proc, expected, out, before)


# Found only while streaming (a bad line after good ones): the flow fails, one line, nothing published.
MID_FILE = {
    "invalid_json_at_line_3": (ROW + "\n" + ROW.replace("three", "four") + "\n{oops\n", "d.jsonl:3: invalid JSON"),
    "non_utf8_at_line_2": ((ROW + "\n").encode() + b'{"instruction": "caf\xe9"}\n', "d.jsonl:2: not UTF-8"),
    "unknown_shape_at_line_2": (ROW + '\n{"query": "q"}\n', "d.jsonl:2: unknown record shape (fields: query)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MID_FILE))
def test_bad_line_after_good_ones_fails_the_run_cleanly(tmp_path, out, prefect_env, case):
    content, expected = MID_FILE[case]
    before = _published(out)
    proc = run_cli(["dedup", str(_write(tmp_path, "d.jsonl", content)), "--out", str(out)], env=prefect_env)
    _assert_one_error_line(proc, expected, out, before)
    assert not any((out / "d" / ".runs").glob("*/version")), "staging files left behind"
