import json

import pytest

from datagen.errors import DatagenError
from datagen.filters.exact_dedup import ExactDedup, normalise, record_text
from datagen.records import Record


def test_normalise_erases_case_width_spacing_and_end_punctuation_only():
    assert normalise("  Hello,\t\nWORLD!!  ") == "hello, world"
    assert normalise("Ｆｕｌｌ－ｗｉｄｔｈ １２３") == "full-width 123"  # NFKC
    assert normalise("Straße") == normalise("STRASSE")  # casefold, not lower
    assert normalise("«Quoted.»") == "quoted"
    assert normalise("a.b, c") == "a.b, c"  # inside the text punctuation is meaning
    assert normalise("?!...") == ""


def test_first_copy_is_kept():
    dedup = ExactDedup()
    assert dedup.check_and_add("a", "Name three primary colours.").keep
    assert dedup.check_and_add("b", "Name three secondary colours.").keep


def test_trivially_different_copy_is_dropped_pointing_at_the_first():
    dedup = ExactDedup()
    dedup.check_and_add("a", "Name three primary colours.")
    verdict = dedup.check_and_add("b", "  name THREE primary   colours ")
    assert not verdict.keep
    assert verdict.reason == "exact_duplicate"
    assert verdict.detail == {"duplicate_of": "a"}
    assert dedup.check_and_add("c", "Name three primary colours!").detail == {"duplicate_of": "a"}
    assert dedup.counts == {"seen": 3, "kept": 1, "dropped": 2}


def test_inner_punctuation_or_word_order_makes_a_different_text():
    dedup = ExactDedup()
    assert dedup.check_and_add("a", "Let's eat, grandma.").keep
    assert dedup.check_and_add("b", "Let's eat grandma.").keep
    assert dedup.check_and_add("c", "grandma eat Let's").keep


def test_record_text_joins_the_chosen_fields_and_conversation_contents():
    rec = Record(instruction="Sum these.", input="1, 2", output="3")
    assert record_text(rec) == "Sum these.\n1, 2\n3"
    assert record_text(rec, ["instruction"]) == "Sum these."
    chat = Record(instruction="", conversation=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert record_text(chat, ["instruction", "conversation"]) == "hi\nhello"


def test_records_differing_only_in_formatting_collapse_to_one():
    dedup = ExactDedup()
    rows = [
        Record(instruction="Translate to French.", input="Good morning", output="Bonjour"),
        Record(instruction="TRANSLATE to French.", input="good  morning", output="Bonjour!"),
        Record(instruction="Translate to French.", input="Good night", output="Bonne nuit"),
    ]
    kept = [r.id for r in rows if dedup.check_and_add(r.id, record_text(r, dedup.fields)).keep]
    assert kept == [rows[0].id, rows[2].id]


def test_config_is_json_for_the_manifest():
    cfg = ExactDedup().config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["fields"] == ["instruction", "input", "output"]


def test_unknown_field_is_a_user_error():
    with pytest.raises(DatagenError, match="instrution"):
        ExactDedup(fields=["instrution"])


def test_fields_may_be_one_name_but_not_another_type():
    assert ExactDedup(fields="instruction").fields == ("instruction",)
    with pytest.raises(DatagenError, match="expected a list of field names, got 5"):
        ExactDedup(fields=5)
