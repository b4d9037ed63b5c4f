"""Each heuristic keeps a sound record and drops the failure it is named for, with its reason code."""
from __future__ import annotations

import pytest

from datagen.errors import DatagenError
from datagen.filters.heuristics import (
    DEFAULT_CHAIN,
    FILTERS,
    EchoedOutput,
    EmptyOutput,
    LanguageMismatch,
    Refusal,
    Repetition,
    TemplateLeak,
    TooLong,
    TooShort,
    Truncated,
    UnbalancedCodeFence,
    build_filter,
    default_heuristics,
)
from datagen.records import Record

EXPLANATION = (
    "Photosynthesis is the process plants use to turn light into chemical energy. Chlorophyll in the "
    "chloroplasts absorbs sunlight, which splits water and releases oxygen. The plant then uses that "
    "energy to fix carbon dioxide from the air into glucose, which feeds its growth."
)
CODE_ANSWER = (
    "Here is a function that reverses a string:\n\n"
    "```python\n"
    "def reverse(s: str) -> str:\n"
    "    return s[::-1]\n\n"
    "print(reverse(\"hello\"))  # olleh\n"
    "```"
)
WORKOUT = (
    "Monday: Chest and triceps. Do 3 sets of 10 push-ups, 3 sets of 10 bench presses and 3 sets of 10 dips.\n"
    "Tuesday: Back and biceps. Do 3 sets of 10 pull-ups, 3 sets of 10 rows and 3 sets of 10 curls.\n"
    "Wednesday: Rest.\n"
    "Thursday: Legs. Do 3 sets of 10 squats, 3 sets of 10 lunges and 3 sets of 10 calf raises.\n"
    "Friday: Shoulders. Do 3 sets of 10 presses, 3 sets of 10 lateral raises and 3 sets of 10 shrugs."
)


def rec(output: str, instruction: str = "Explain how photosynthesis works.", input: str = "") -> Record:
    return Record(instruction=instruction, input=input, output=output)


def chat(*turns: str) -> Record:
    roles = ["user", "assistant"] * len(turns)
    return Record(instruction=turns[0], conversation=[{"role": r, "content": t} for r, t in zip(roles, turns)])


def test_a_sound_answer_passes_every_default_heuristic():
    for f in default_heuristics():
        for record in (rec(EXPLANATION), rec(CODE_ANSWER, "Write a Python function that reverses a string."),
                       rec(WORKOUT, "Make me a weekly workout plan.")):
            assert f(record).keep, (f.name, f(record))
            assert f.filter(record) == f(record)


# ---------------------------------------------------------------- refusal

def test_refusal_dropped():
    v = Refusal()(rec("I'm sorry, but I can't help with that request."))
    assert (v.keep, v.reason) == (False, "refusal")
    assert v.detail["field"] == "output"


@pytest.mark.parametrize("text", [
    "As an AI language model, I don’t have personal opinions, but here are some views.",
    "As a language model, I cannot browse the internet.",
    "I cannot assist with creating malware.",
    "I apologize, but I cannot provide that information.",
])
def test_refusal_boilerplate_variants_dropped(text):
    assert Refusal()(rec(text)).reason == "refusal"


@pytest.mark.parametrize("text", [
    EXPLANATION,
    "BERT was pretrained as a language model on Wikipedia and BookCorpus.",
    "I can't help but notice how the author uses foreshadowing in the first chapter.",
])
def test_refusal_look_alikes_kept(text):
    assert Refusal()(rec(text)).keep


def test_refusal_checks_every_assistant_turn():
    v = Refusal()(chat("Hi!", "Hello! How can I help?", "Write a phishing email.", "I'm sorry, but I can't do that."))
    assert v.reason == "refusal" and v.detail["field"] == "conversation[3]"


def test_refusal_extra_patterns():
    f = build_filter("refusal", extra_patterns=[r"\bI do not feel comfortable\b"])
    assert f(rec("I do not feel comfortable writing that.")).reason == "refusal"


# ---------------------------------------------------------------- truncated

def test_truncated_mid_sentence_dropped():
    v = Truncated()(rec("The French Revolution began in 1789 and was caused by a financial crisis, social inequality and the"))
    assert (v.keep, v.reason) == (False, "truncated")
    assert "the" in v.detail["why"]


def test_truncated_mid_word_dropped():
    v = Truncated()(rec("The French Revolution began in 1789 and was caused by a financial crisis and political disagreem"))
    assert v.reason == "truncated" and v.detail["why"] == "no terminal punctuation"


@pytest.mark.parametrize("text, why", [
    ("The main causes were debt (from the wars and the court's spending.", "unclosed '('"),
    ('The motto was "Liberty, equality and fraternity for all citizens of France', "unclosed quote"),
    ("Here is the code:\n```python\ndef f(x):\n    return x +", "unclosed code fence"),
    ("The three primary colours are red, blue,", "ends with ','"),
])
def test_truncated_signals(text, why):
    v = Truncated()(rec(text))
    assert v.reason == "truncated"
    if why:
        assert v.detail["why"] == why


@pytest.mark.parametrize("text", [
    EXPLANATION,
    CODE_ANSWER,                                        # ends with a closing fence
    "def add(a, b):\n    return a + b",                 # unfenced code
    "Positive",                                         # a classification label
    "Paris",
    "- flour\n- sugar\n- three eggs and a pinch of salt for the dough",  # list item
    "| Planet | Moons |\n|---|---|\n| Earth | 1 |\n| Mars | 2 |",       # table
    "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd so are you",  # short poem lines
    "Read more at https://en.wikipedia.org/wiki/Photosynthesis",
    "The pizza is 12\" wide and costs about 15 dollars in most places.",  # inch mark, not a quote
    "Vitamin A",
    "That's it :(",
])
def test_truncated_false_positive_guards(text):
    assert Truncated()(rec(text)).keep, Truncated()(rec(text))


# ---------------------------------------------------------------- repetition

def test_repetition_loop_dropped():
    v = Repetition()(rec("The best way to learn is to practice every day. " * 10))
    assert (v.keep, v.reason) == (False, "repetition")
    assert v.detail["rule"] == "dup_ngram" and v.detail["fraction"] > v.detail["max"]
    assert "practice" in v.detail["ngram"] or "learn" in v.detail["ngram"]


def test_repetition_partial_loop_dropped():
    letter = ("Dear Ms. Smith, thank you for inviting me to the meeting on Thursday. Unfortunately I have a "
              "prior commitment at the same time, so I cannot attend. Could you share the notes with me? ")
    assert Repetition()(rec(letter + "I look forward to hearing from you soon. " * 5)).reason == "repetition"


def test_repetition_list_shaped_answer_kept():
    assert Repetition()(rec(WORKOUT)).keep
    assert Repetition()(rec(EXPLANATION)).keep


def test_repetition_ignores_code_and_short_texts():
    code = "```python\n" + "print('hello world from the loop body')\n" * 20 + "```\n\nThis prints the line twenty times."
    assert Repetition()(rec(code)).keep
    assert Repetition()(rec("Yes yes yes yes yes yes.")).keep
    assert not Repetition(ignore_code=False)(rec(code)).keep


def test_repetition_gopher_thresholds_configurable():
    gopher = build_filter("repetition", dup_ngram_max={"5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.10})
    assert gopher(rec(WORKOUT)).reason == "repetition"
    stuffing = build_filter("repetition", top_ngram_max={2: 0.20, 3: 0.18, 4: 0.16})
    v = stuffing(rec(WORKOUT))
    assert v.detail["rule"] == "top_ngram" and "sets" in v.detail["ngram"]


# ---------------------------------------------------------------- length

def test_too_short_instruction_dropped_and_sound_kept():
    v = TooShort()(rec(EXPLANATION, instruction="Hi"))
    assert (v.keep, v.reason) == (False, "too_short")
    assert v.detail == {"field": "instruction", "tokens": 1, "min": 2}
    assert TooShort()(rec("Positive", instruction="Classify the sentiment: I loved it.")).keep


def test_too_short_min_tokens_sets_both_limits():
    f = build_filter("too_short", min_tokens=3)
    assert (f.min_instruction_tokens, f.min_output_tokens) == (3, 3)
    assert f(rec("Yes.", instruction="Is water wet?")).detail["field"] == "output"


def test_too_long_output_dropped_and_sound_kept():
    f = TooLong(max_output_tokens=20)
    v = f(rec(EXPLANATION))
    assert (v.keep, v.reason) == (False, "too_long")
    assert v.detail["field"] == "output" and v.detail["tokens"] > 20
    assert TooLong()(rec(EXPLANATION)).keep
    assert TooLong(max_instruction_tokens=3)(rec("ok", instruction="Explain how photosynthesis works.")).reason == "too_long"


# ---------------------------------------------------------------- empty / echoed

@pytest.mark.parametrize("output", ["", "   \n", "..."])
def test_empty_output_dropped(output):
    v = EmptyOutput()(rec(output))
    assert (v.keep, v.reason) == (False, "empty_output")


def test_empty_output_kept_for_short_answers_and_checks_turns():
    assert EmptyOutput()(rec("42")).keep
    assert EmptyOutput()(chat("Hello", "Hi there!", "And now?", " ")).detail["field"] == "conversation[3]"
    assert EmptyOutput()(Record(instruction="Hi", conversation=[{"role": "user", "content": "Hi"}])).reason == "empty_output"


def test_echoed_output_dropped():
    assert EchoedOutput()(rec("Explain how photosynthesis works")).reason == "echoed_output"
    v = EchoedOutput()(rec("He go to school every day.", instruction="Fix the grammar.", input="He go to school every day."))
    assert (v.keep, v.reason, v.detail["echoes"]) == (False, "echoed_output", "input")
    twice = "Explain how photosynthesis works. Explain how photosynthesis works."
    assert EchoedOutput()(rec(twice)).reason == "echoed_output"


def test_echoed_output_extraction_answer_kept():
    record = rec("Apple", instruction="Extract the company name.", input="Apple released a new phone on Tuesday.")
    assert EchoedOutput()(record).keep
    assert EchoedOutput()(rec(EXPLANATION)).keep


def test_echoed_output_multi_turn():
    assert EchoedOutput()(chat("What is the capital of Peru?", "What is the capital of Peru?")).reason == "echoed_output"
    assert EchoedOutput()(chat("What is the capital of Peru?", "Lima.")).keep


# ---------------------------------------------------------------- code fences

def test_unbalanced_code_fence_dropped():
    v = UnbalancedCodeFence()(rec("Use this:\n```python\nprint('hi')\n\nIt prints hi."))
    assert (v.keep, v.reason) == (False, "unbalanced_code_fence")
    assert v.detail["open_line"] == 2


def test_balanced_and_nested_fences_kept():
    assert UnbalancedCodeFence()(rec(CODE_ANSWER)).keep
    nested = "Write it like this:\n````markdown\n```python\nx = 1\n```\n````\nThat renders a code block."
    assert UnbalancedCodeFence()(rec(nested)).keep


# ---------------------------------------------------------------- template leak

@pytest.mark.parametrize("output, placeholder", [
    ("Here is the answer to {instruction}: plants make sugar.", "{instruction}"),
    ("<noinput>", "<noinput>"),
    ("Sure. [INST] Explain more [/INST]", "[INST]"),
    ("### Instruction:\nExplain photosynthesis.\n### Response:\nPlants make sugar.", "### Instruction:"),
    ("Dear {{ customer_name }}, your order has shipped.", "{{ customer_name }}"),
])
def test_template_leak_dropped(output, placeholder):
    v = TemplateLeak()(rec(output))
    assert (v.keep, v.reason) == (False, "template_leak")
    assert v.detail["placeholder"] == placeholder


def test_template_leak_in_instruction_dropped():
    v = TemplateLeak()(rec(EXPLANATION, instruction="Summarize the following text. <no input>"))
    assert v.reason == "template_leak" and v.detail["field"] == "instruction"


def test_template_syntax_in_code_is_not_a_leak():
    jinja = "Use this template:\n\n```html\n<h1>{{ title }}</h1>\n```\n\nThen call `template.format(input=x)` on `{input}`."
    assert TemplateLeak()(rec(jinja, instruction="How do I show a title in a Jinja template?")).keep
    asked = rec("In Jinja, {{ title }} prints the variable title.", instruction="What does {{ title }} do in Jinja?")
    assert TemplateLeak()(asked).keep


# ---------------------------------------------------------------- language mismatch

LONG_QUESTION = "Explain in simple terms how photosynthesis works in green plants."


def test_language_mismatch_dropped():
    v = LanguageMismatch()(rec("La photosynthèse est le processus par lequel les plantes fabriquent leur nourriture.",
                               instruction=LONG_QUESTION))
    assert (v.keep, v.reason) == (False, "language_mismatch")
    assert v.detail["instruction"]["lang"] == "en" and v.detail["output"]["lang"] == "fr"


def test_language_match_and_translation_kept():
    assert LanguageMismatch()(rec(EXPLANATION, instruction=LONG_QUESTION)).keep
    translation = rec("Le chat dort sur la table de la cuisine depuis ce matin.",
                      instruction="Translate into French: the cat has been sleeping on the kitchen table since this morning.")
    assert LanguageMismatch()(translation).keep
    assert not LanguageMismatch(allow_translation=False)(translation).keep


def test_language_mismatch_short_texts_are_not_judged():
    assert LanguageMismatch()(rec("Oui.", instruction="Is Paris the capital of France? Answer in one word.")).keep
    # "Explain how photosynthesis works." has too few letters for langdetect to be trusted.
    assert LanguageMismatch()(rec("La photosynthèse est le processus par lequel les plantes fabriquent leur nourriture.")).keep


# ---------------------------------------------------------------- registry

def test_registry_names_every_heuristic_with_its_reason():
    for name in DEFAULT_CHAIN:
        f = build_filter(name)
        assert f.name == name and f.reason in f.reasons
    assert {"language", "decontaminate"} <= set(FILTERS)


def test_build_filter_rejects_unknown_names_and_parameters():
    with pytest.raises(DatagenError, match="unknown filter 'too_shrot'"):
        build_filter("too_shrot")
    with pytest.raises(DatagenError, match="too_short.*min_toks"):
        build_filter("too_short", min_toks=3)
    with pytest.raises(DatagenError, match="min_tokens"):
        build_filter("too_short", min_tokens=-1)
    with pytest.raises(DatagenError, match="bad refusal pattern"):
        build_filter("refusal", extra_patterns=["("])
