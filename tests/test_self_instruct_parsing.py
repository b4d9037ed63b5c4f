"""How teacher text becomes instructions and instances, exactly as the Self-Instruct scripts read it."""
from __future__ import annotations

from datagen.methods.self_instruct import (Templates, is_classification_answer, numbered_prompt,
                                           parse_classification_instances, parse_generation_instances,
                                           parse_numbered_list)


def test_bootstrap_prompt_numbers_eight_and_ends_with_nine():
    tpl = Templates.load().bootstrap
    prompt = numbered_prompt(tpl, [f"Task   number {i}\nwith a break." for i in range(1, 9)])
    assert prompt.endswith("\n8. Task number 8 with a break.\n9.")
    assert "\n1. Task number 1 with a break.\n" in prompt


def test_numbered_list_split_and_cleaned():
    text = " give three\n  tips for sleeping.\n10. Translate the sentence into French.\n11 . Odd spacing kept apart.\n12.No space after dot stays joined"
    assert parse_numbered_list(text) == [
        "Give three tips for sleeping.",
        "Translate the sentence into French.",
        "Odd spacing kept apart.\n12.No space after dot stays joined".replace("\n", " "),
    ]


def test_numbered_list_keeps_case_after_first_letter():
    assert parse_numbered_list(" summarize the NASA report.") == ["Summarize the NASA report."]


def test_generation_instances_examples_and_fields():
    text = ("Example 1\nTemperature: 50 °F\nOutput: 10.0 °C\n"
            "Example 2\nInput: 212 °F\nOutput: 100.0 °C\nInput: 0 °F\nOutput: -17.8 °C\n")
    assert parse_generation_instances(text, "stop") == [("Temperature: 50 °F", "10.0 °C"), ("212 °F", "100.0 °C")]


def test_generation_instance_without_input():
    assert parse_generation_instances("Output: Drink water.\nSleep well.", "stop") == [("", "Drink water.\nSleep well.")]
    assert parse_generation_instances("Just some text.", "stop") == []


def test_length_cut_drops_the_last_instance():
    text = "Example 1\nInput: a\nOutput: b\nExample 2\nInput: c\nOutput: d is cut"
    assert parse_generation_instances(text, "length") == [("a", "b")]
    clf = "Class label: Yes\nAnimal: owl\nClass label: No\nAnimal: em"
    assert parse_classification_instances(clf, "length") == [("Animal: owl", "Yes")]


def test_classification_instances_are_output_first():
    text = " Positive\nReview: Loved it.\nClass label: Negative\nReview: Broke in a day.\nClass label: Mixed"
    assert parse_classification_instances("Class label:" + text, "stop") == [
        ("Review: Loved it.", "Positive"), ("Review: Broke in a day.", "Negative"), ("", "Mixed")]
    assert parse_classification_instances("no labels here", "stop") == []


def test_classification_answer():
    assert is_classification_answer(" Yes")
    assert is_classification_answer("yes.")
    assert not is_classification_answer(" No")
    assert not is_classification_answer("")
