"""Decontamination against eval files written in a tmp dir, the way a user would point at them."""
from __future__ import annotations

import json

import pytest

from datagen.errors import DatagenError
from datagen.filters.decontaminate import Decontaminator, normalised_words
from datagen.filters.heuristics import build_filter
from datagen.records import Record

GSM_QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
OTHER_QUESTION = (
    "Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?"
)


@pytest.fixture
def eval_jsonl(tmp_path):
    path = tmp_path / "gsm8k_test.jsonl"
    rows = [
        {"question": OTHER_QUESTION, "answer": "Weng earns 12/60 = 0.2 per minute. #### 10"},
        {"question": GSM_QUESTION, "answer": "Natalia sold 48/2 = 24 clips in May. #### 72"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_record_copying_a_13_word_span_is_dropped_naming_file_and_item(eval_jsonl):
    index = Decontaminator.from_files([eval_jsonl])
    span = "sold half as many clips in May. How many clips did Natalia sell"  # 13 words
    assert len(normalised_words(span)) == 13
    record = Record(instruction=f"Solve this: {span.upper()}?!", output="The answer is 72.")
    v = index.check(record)
    assert (v.keep, v.reason) == (False, "contamination")
    assert v.detail["eval_file"] == "gsm8k_test.jsonl"
    assert v.detail["eval_item"] == 2 and v.detail["eval_line"] == 2
    assert v.detail["ngram"] == " ".join(normalised_words(span))
    assert v.detail["field"] == "instruction"


def test_record_without_a_shared_13_gram_is_kept(eval_jsonl):
    index = Decontaminator.from_files(eval_jsonl)
    # 12 consecutive words of the eval question, then different words: no full 13-gram in common.
    near = "Natalia sold clips to 48 of her friends in April, and then gave the rest away."
    record = Record(instruction=near, output="She sold clips in April and May to her friends and family.")
    assert index.check(record).keep
    assert index(Record(instruction="Write a poem about the sea.", output="Waves.")).keep


def test_item_id_comes_from_the_id_field_and_named_fields_limit_what_is_indexed(tmp_path):
    path = tmp_path / "humaneval.jsonl"
    prompt = "Write a function that returns the sum of all even numbers in a list of integers given as input."
    path.write_text(json.dumps({"task_id": "HumanEval/7", "prompt": prompt, "canonical": "return sum(x)"}) + "\n")
    index = Decontaminator.from_files([path], fields=["prompt"], id_field="task_id")
    v = index.check(Record(instruction=prompt, output="def f(xs): ..."))
    assert v.detail["eval_item"] == "HumanEval/7" and v.detail["eval_line"] == 1


def test_short_items_match_whole(tmp_path):
    path = tmp_path / "trivia.txt"
    path.write_text("Which planet in our solar system has the most moons?\n\nWho painted it?\n", encoding="utf-8")
    index = Decontaminator.from_files([path])
    v = index.check(Record(instruction="Quiz: which planet in our solar system has the MOST moons? Explain."))
    assert v.reason == "contamination" and v.detail["eval_item"] == 1
    assert v.detail["ngram"] == "which planet in our solar system has the most moons"
    # Part of a short item is not enough, and items under min_item_words ("Who painted it?") are skipped.
    assert index.check(Record(instruction="Which planet in our solar system is the largest?")).keep
    assert index.check(Record(instruction="Who painted it? I forgot the name.")).keep


def test_multi_turn_and_output_fields_are_checked(eval_jsonl):
    index = Decontaminator.from_files([eval_jsonl])
    record = Record(instruction="Give me a maths word problem.", conversation=[
        {"role": "user", "content": "Give me a maths word problem."},
        {"role": "assistant", "content": GSM_QUESTION},
    ])
    v = index.check(record)
    assert v.reason == "contamination" and v.detail["field"] == "conversation[1]"


def test_registry_builds_the_decontaminator(eval_jsonl):
    f = build_filter("decontaminate", paths=[str(eval_jsonl)], n=8)
    assert f.n == 8 and f.check(Record(instruction=GSM_QUESTION)).reason == "contamination"


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"question": GSM_QUESTION}) + "\n{\"question\": \"unterminated\n", encoding="utf-8")
    with pytest.raises(DatagenError, match=r"broken\.jsonl:2: invalid JSON"):
        Decontaminator.from_files([path])


@pytest.mark.parametrize("content, message", [
    ('[1, 2, 3]\n', r"bad\.jsonl:1: expected a JSON object"),
    ('{"question": "%s"}\n{"answer": "x"}\n' % GSM_QUESTION, r"bad\.jsonl:2: field 'question' missing"),
])
def test_bad_eval_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatagenError, match=message):
        Decontaminator.from_files([path], fields=["question"])


def test_missing_undecodable_or_empty_eval_files_are_user_errors(tmp_path):
    with pytest.raises(DatagenError, match="not found"):
        Decontaminator.from_files([tmp_path / "nope.jsonl"])
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(("%s\n" % GSM_QUESTION).encode() + "Caf\xe9 au lait pour tout le monde ce matin\n".encode("latin-1"))
    with pytest.raises(DatagenError, match=r"latin1\.txt:2: not UTF-8"):
        Decontaminator.from_files([latin1])
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"label": "positive"}\n{"label": "negative"}\n', encoding="utf-8")
    with pytest.raises(DatagenError, match="no eval item"):
        Decontaminator.from_files([labels])


def test_index_stores_hashes_not_text(eval_jsonl):
    index = Decontaminator.from_files([eval_jsonl])
    assert index.item_count == 2
    assert index._hashes.typecode == "Q" and len(index) == len(index._hashes) > 0


# Self-Instruct layout: the task in the instruction, its text in the input; neither half has 13 words.
SPLIT_TASK = "Read this movie review and decide whether the critic liked the film."
SPLIT_INPUT = "The acting was wooden, the plot made no sense, I left early."


def test_eval_item_split_over_instruction_and_input_is_caught(tmp_path):
    evals = tmp_path / "sentiment.jsonl"
    evals.write_text(json.dumps({"id": "rev-3", "prompt": f"{SPLIT_TASK} {SPLIT_INPUT}"}) + "\n", encoding="utf-8")
    index = Decontaminator.from_files([evals])
    assert len(normalised_words(SPLIT_TASK)) < 13 and len(normalised_words(SPLIT_INPUT)) < 13
    v = index.check(Record(instruction=SPLIT_TASK, input=SPLIT_INPUT, output="Negative."))
    assert (v.keep, v.detail["eval_item"]) == (False, "rev-3")
    assert v.detail["field"] == "instruction+input"
    # either half alone is not the eval item
    assert index.check(Record(instruction=SPLIT_TASK, output="Positive.")).keep
    assert index.check(Record(instruction="Classify this.", input=SPLIT_INPUT, output="Negative.")).keep


def test_eval_item_split_over_conversation_turns_is_caught(tmp_path):
    evals = tmp_path / "trivia.txt"
    evals.write_text("Which river flows through the city of Vienna and then on into the Black Sea?\n", encoding="utf-8")
    index = Decontaminator.from_files([evals])
    first, rest = "Which river flows through the city of Vienna", "and then on into the Black Sea?"
    turns = [{"role": "user", "content": first}, {"role": "assistant", "content": "Go on."},
             {"role": "user", "content": rest}, {"role": "assistant", "content": "The Danube."}]
    v = index.check(Record(instruction=first, conversation=turns))
    assert v.reason == "contamination" and v.detail["field"] == "conversation[0]+conversation[2]"
    # back to back, the turns are one sequence too
    v = index.check(Record(instruction=first, conversation=[turns[0], turns[2], turns[3]]))
    assert v.reason == "contamination" and v.detail["field"] == "conversation[0]+conversation[1]"
