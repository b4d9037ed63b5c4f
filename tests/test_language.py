"""Language filter: English kept, French dropped, unknown for what langdetect cannot judge, always reproducible."""
from __future__ import annotations

from datagen.filters.heuristics import build_filter
from datagen.filters.language import UNKNOWN, LanguageFilter, detect_fields, detect_language
from datagen.records import Record

EN_Q = "Explain in simple terms how photosynthesis works in green plants."
EN_A = ("Plants capture sunlight with chlorophyll and use its energy to turn water and carbon dioxide "
        "into sugar, releasing oxygen into the air as a by-product.")
FR_Q = "Explique simplement comment fonctionne la photosynthèse chez les plantes vertes."
FR_A = ("Les plantes captent la lumière du soleil grâce à la chlorophylle et utilisent cette énergie pour "
        "transformer l'eau et le dioxyde de carbone en sucre, en libérant de l'oxygène.")


def test_english_record_kept_with_detected_languages_recorded():
    v = LanguageFilter(allowed=["en"])(Record(EN_Q, output=EN_A))
    assert v.keep and v.reason == ""
    assert v.detail["instruction"]["lang"] == "en" and v.detail["output"]["lang"] == "en"
    assert v.detail["output"]["prob"] > 0.9


def test_french_record_dropped_when_only_english_allowed():
    v = LanguageFilter(allowed=["en"])(Record(FR_Q, output=FR_A))
    assert (v.keep, v.reason) == (False, "language")
    assert v.detail["instruction"]["lang"] == "fr" and v.detail["output"]["lang"] == "fr"
    assert v.detail["output"]["prob"] > 0.9


def test_french_output_to_english_question_dropped():
    v = LanguageFilter(allowed=["en"])(Record(EN_Q, output=FR_A))
    assert v.reason == "language" and v.detail["instruction"]["lang"] == "en"


def test_several_languages_allowed():
    assert LanguageFilter(allowed=["en", "fr"])(Record(FR_Q, output=FR_A)).keep
    assert build_filter("language", allowed=["fr"])(Record(FR_Q, output=FR_A)).keep
    assert not build_filter("language", allowed="de")(Record(FR_Q, output=FR_A)).keep


def test_detection_is_deterministic_across_calls():
    # Ambiguous short-ish text is where langdetect's sampling would wobble without a seed.
    text = "Write a haiku about autumn leaves falling gently."
    first = detect_language(text, min_letters=1)
    for _ in range(20):
        assert detect_language(text, min_letters=1) == first
    record = Record(EN_Q, output=EN_A)
    assert LanguageFilter()(record) == LanguageFilter()(record)


def test_short_text_and_code_are_unknown_and_never_dropped():
    assert detect_language("Yes").lang == UNKNOWN       # langdetect alone says Turkish
    assert detect_language("Paris").lang == UNKNOWN
    assert detect_language("42").lang == UNKNOWN
    assert detect_language("").lang == UNKNOWN
    code = "def area(radius):\n    return 3.14159 * radius ** 2\n\nprint(area(2.0))\nresult = area(10)"
    assert detect_language(code).lang == UNKNOWN
    fenced = f"{EN_A}\n\n```python\nprint('bonjour tout le monde, comment allez-vous aujourd hui')\n```"
    assert detect_language(fenced).lang == "en"
    v = LanguageFilter(allowed=["en"])(Record("Translate 'cat' to French.", output="chat"))
    assert v.keep and v.detail["output"] == {"lang": UNKNOWN, "prob": 0.0}


def test_punctuation_only_text_never_raises():
    # langdetect raises LangDetectException on text without features; we answer unknown instead.
    assert detect_language("!!! ??? ... ---", min_letters=0).lang == UNKNOWN
    assert detect_language("12345 678", min_letters=0).lang == UNKNOWN


def test_multi_turn_fields_are_user_and_assistant_turns():
    record = Record(
        instruction=EN_Q,
        conversation=[{"role": "user", "content": EN_Q}, {"role": "assistant", "content": FR_A}],
    )
    guesses = detect_fields(record)
    assert guesses["instruction"].lang == "en" and guesses["output"].lang == "fr"
    assert LanguageFilter()(record).reason == "language"


def test_min_prob_applies_to_allowed_languages_together():
    record = Record(EN_Q, output=EN_A)
    assert LanguageFilter(allowed=["en"], min_prob=0.99)(record).keep
    assert not LanguageFilter(allowed=["fr"], min_prob=0.01)(record).keep


def test_unknown_language_code_is_an_error_naming_the_field_not_an_empty_dataset():
    import pytest

    from datagen.errors import DatagenError
    from datagen.methods.curate import build_chain

    with pytest.raises(DatagenError, match=r"chain\.yaml: filters\[2\]: filter 'language': allowed: unknown language code 'xx-nope'"):
        build_chain(["refusal", {"language": {"allowed": ["xx-nope"]}}], where="chain.yaml")
    with pytest.raises(DatagenError, match="fields: unknown field 'outptu'"):
        LanguageFilter(fields=["outptu"])
    # base languages and langdetect's regional codes are both known
    assert LanguageFilter(allowed=["zh", "zh-TW", "en"]).allowed == ("zh", "zh-tw", "en")
