"""Self-Instruct's instruction and instance filters: each keeps a good case and drops its bad one."""
from __future__ import annotations

import pytest

from datagen.filters.instances import filter_instances
from datagen.filters.instruction import ALPACA_BLACKLIST, InstructionRules

rules = InstructionRules()


def test_keeps_an_ordinary_instruction():
    assert rules("Explain why the moon has phases.").keep


@pytest.mark.parametrize("text,reason", [
    ("", "empty_instruction"),
    ("Explain the moon.", "too_few_words"),
    ("Describe " + "very " * 150 + "slowly.", "too_many_words"),
    ("Describe the image below in detail.", "blacklisted_word"),
    ("Please go to the store and report prices.", "blacklisted_word"),
    ("Write a program that sorts numbers quickly.", "write_a_program"),
    ("- Describe your favourite season briefly.", "starts_with_punctuation"),
    ("¿Cuál es la capital de Francia hoy?", "starts_with_non_ascii"),
])
def test_drops_with_its_reason(text, reason):
    verdict = rules(text)
    assert not verdict.keep and verdict.reason == reason


def test_blacklist_is_word_bounded():
    assert rules("Summarize the profile of this company briefly.").keep   # "file" inside "profile"
    assert rules("Name two mapping techniques used by cartographers.").keep
    assert not rules("Open the Files app and rename things.").keep


def test_boundaries_four_and_one_fifty_words():
    assert rules("Name four primary colours.").keep
    assert rules("Name " + "x " * 148 + "now.").keep
    assert not rules("Name three colours.").keep


def test_alpaca_blacklist_adds_media_words():
    alpaca = InstructionRules(blacklist=ALPACA_BLACKLIST)
    assert rules("Compose music for a short film scene.").keep
    assert alpaca("Compose music for a short film scene.").reason == "blacklisted_word"


def test_instance_filters_each_reason():
    kept, dropped = filter_instances([("a", "a"), ("b", ""), ("Sentence:", "x"), ("c", "ends:"), ("d", "ok"),
                                      ("d", "ok")])
    assert kept == [("d", "ok")]
    assert [v.reason for _, v in dropped] == ["input_equals_output", "empty_output", "ends_with_colon",
                                              "ends_with_colon", "duplicate_instance"]


def test_same_input_two_outputs_drops_the_whole_task():
    kept, dropped = filter_instances([("x", "1"), ("y", "2"), ("x", "3")])
    assert kept == [] and {v.reason for _, v in dropped} == {"conflicting_outputs"}


def test_empty_inputs_may_have_different_outputs_and_at_most_five_kept():
    inst = [("", f"answer {i}") for i in range(7)]
    kept, dropped = filter_instances(inst)
    assert kept == inst[:5] and [v.reason for _, v in dropped] == ["too_many_instances"] * 2
