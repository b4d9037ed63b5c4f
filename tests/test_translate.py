"""Translation (datagen.methods.translate, the translate flow, `datagen translate`, `--translate`) against a
scripted loopback translator: the real Teacher client over HTTP to tests/openai_stub.py, where the exact
answer matters (which token comes back, in which language). The stub's "translation" replaces each
English word by a word of the target language chosen by hashing it, keeping the mask tokens where they
were: langdetect then sees real Chinese or French, and two similar sources give two similar
translations. It is no evidence that translation works; test_translate_embedded.py runs a real model."""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from evol_responder import Script, last_user
from openai_stub import StubConfig, StubServer

from datagen.methods import translate as tr
from datagen.records import Record
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig

HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"
FRENCH = ("les des avec pour être très où française nous vous leur cette sont dans mais aussi comme faire peut "
          "deux après").split()
TOKEN = re.compile(r"\[\[P\d+\]\]")
_PROMPT = re.compile(r"into (.+?)\.\n.*?\n----------\n(.*)\n----------\n?$", re.S)


def _word(word: str, pool) -> str:
    return pool[int(hashlib.sha256(word.lower().encode()).hexdigest(), 16) % len(pool)]


def fake_translation(text: str, language: str) -> str:
    """Token-preserving word-for-word 'translation' into Chinese or French (see the module docstring)."""
    out_lines = []
    for line in text.split("\n"):
        parts = re.split(r"(\[\[P\d+\]\])", line)
        out = []
        for part in parts:
            if TOKEN.fullmatch(part):
                out.append(part)
                continue
            words = re.findall(r"[A-Za-z']+", part)
            if "Chinese" in language:
                out.append("".join(_word(w, HAN) for w in words))
            else:
                out.append(" ".join(_word(w, FRENCH) for w in words))
        sep = "" if "Chinese" in language else " "
        out_lines.append(sep.join(p for p in out if p))
    return "\n".join(out_lines)


class Translator:
    """Answers translate prompts: `fake_translation`, unless `script` maps a marker found in the masked
    text to an answer (a string, or a callable of (text, language)). Other prompts go to `other`."""

    def __init__(self, script=None, other=None):
        self.script = script or {}
        self.other = other or Script()
        self.seen: list[str] = []

    def __call__(self, kind: str, body: dict) -> str:
        prompt = last_user(body)
        m = _PROMPT.search(prompt) if "professional translator" in prompt else None
        if m is None:
            return self.other(kind, body)
        language, text = m.group(1), m.group(2)
        self.seen.append(text)
        for marker, answer in self.script.items():
            if marker in text:
                return answer(text, language) if callable(answer) else answer
        return fake_translation(text, language)


def _translate(srv, records, **params):
    async def go():
        async with Teacher(TeacherConfig(base_url=srv.base_url, model="stub", max_concurrency=16, max_retries=0),
                           cache=None) as teacher:
            role = teacher.as_role("translator")
            state = tr.TranslateState(records, tr.TranslateParams(**{"languages": ["zh"], **params}),
                                      tr.TranslateTemplates.load())
            await state.run(role)
            return state, role.usage
    return asyncio.run(go())


def _one(text_or_record, script=None, **params):
    rec = text_or_record if isinstance(text_or_record, Record) else Record(
        instruction="Explain the following carefully for a new student of the subject.", input="",
        output=text_or_record)
    t = Translator(script)
    with StubServer(StubConfig(responder=t)) as srv:
        state, usage = _translate(srv, [rec], **params)
    return state, t, usage


def _reasons(state):
    return [(r["reason"], r["detail"].get("kind"), r["detail"].get("problem")) for r in state.rejected]


# -- each protected span: masked before, required exactly once after ----------------------------

SPANS = {
    "code_block": ("Run this program and read what it prints to the screen:\n```python\nprint('hi')\n```\n",
                   "```python\nprint('hi')\n```"),
    "inline_code": ("Call the function `load_data()` before you train the model on it.", "`load_data()`"),
    "url": ("Read the guide at https://example.com/guide?page=2 before starting the work.",
            "https://example.com/guide?page=2"),
    "placeholder": ("Write a greeting for {name} that mentions the weather today and tomorrow.", "{name}"),
    "noinput": ("Answer the question without any input at all here: <noinput>", "<noinput>"),
    "number": ("Buy 12 apples and 3.5 kilograms of flour from the market before noon.", "3.5"),
    "markdown": ("## Steps to follow\n1. Open the window in the morning\n- Water every plant carefully", "## Steps"),
}


@pytest.mark.parametrize("case", sorted(SPANS))
def test_each_protected_span_is_masked_kept_and_restored(case):
    text, span = SPANS[case]
    state, t, _ = _one(text)
    (sent,) = [s for s in t.seen if "Explain" not in s and "[[P" in s]
    # the span never reaches the translator; its token does, and the translation gets it back verbatim
    core = span.split()[0] if case == "markdown" else span
    assert len(tr.mask(text).spans) >= 1
    assert core not in sent
    (rec,) = state.translations
    assert core in rec.output and rec.lang == "zh" and rec.method == "translate"
    assert state.summary()["protected_spans"][("placeholder" if case == "noinput" else case)] >= 1
    assert not re.search(r"[A-Za-z]{4,}", TOKEN.sub("", tr.mask(rec.output).text).replace("P", ""))


@pytest.mark.parametrize("case", sorted(SPANS))
def test_a_lost_protected_span_rejects_the_record_naming_it(case):
    text, span = SPANS[case]
    kind = "placeholder" if case == "noinput" else case
    drop_first = {"Explain": lambda x, lang: fake_translation(x, lang)}
    drop_span = {"[[P1]]": lambda x, lang: fake_translation(x.replace("[[P1]]", "", 1), lang)}
    state, _, _ = _one(text, script={**drop_first, **drop_span})
    assert not state.translations
    (row,) = state.rejected
    assert row["reason"] == "protected_span_lost" and row["stage"] == "translate"
    assert row["detail"]["field"] == "output" and row["detail"]["problem"] == "missing"
    assert row["detail"]["kind"] == kind and row["detail"]["token"] == "[[P1]]"
    assert row["detail"]["span"] == tr.mask(text).spans[0][1]
    assert row["detail"]["language"] == "zh" and state.summary()["per_language"]["zh"]["rejected"] == {
        "protected_span_lost": 1}


def test_a_repeated_token_and_a_moved_markdown_marker_are_rejected():
    state, _, _ = _one("Pay 40 dollars for the ticket and keep the receipt somewhere safe.",
                       script={"[[P1]]": lambda x, lang: fake_translation(x + " [[P1]]", lang)})
    assert _reasons(state) == [("protected_span_lost", "number", "repeated")]
    state, _, _ = _one("## Steps to take when the water boils over in the kitchen",
                       script={"[[P1]]": lambda x, lang: "这是" + fake_translation(x, lang)})
    assert _reasons(state) == [("protected_span_lost", "markdown", "moved off the start of its line")]


def test_full_width_brackets_from_a_cjk_translation_still_count():
    def fullwidth(x, lang):
        return fake_translation(x, lang).replace("[[", "［［").replace("]]", "］］")
    state, _, _ = _one("Wait 15 minutes before you open the oven door again.", script={"[[P1]]": fullwidth})
    (rec,) = state.translations
    assert "15" in rec.output and "［" not in rec.output


def test_an_answer_in_the_wrong_language_is_rejected_with_detected_and_expected():
    french = {"careful": lambda x, lang: fake_translation(x, "French")}
    rec = Record(instruction="Give a careful answer about the history of bridges in old cities.",
                 output="Bridges were first built from wood and rope across narrow rivers long ago.")
    state, _, _ = _one(rec, script=french)
    (row,) = state.rejected
    assert row["reason"] == "wrong_language" and row["detail"]["field"] == "instruction"
    assert row["detail"]["expected"] == "zh" and row["detail"]["detected"] == "fr"


def test_short_text_is_judged_by_script_where_langdetect_confuses_neighbours():
    # langdetect 1.0.9 (seed 0) says ko / vi for these Chinese sentences, bg / mk for these Russian ones
    for text in ("将下列句子翻译成英文。", "用 Python 写一个函数。"):
        assert tr.language_ok(text, "zh", 0.5, "en") == (True, {"detected": "zh", "prob": 1.0, "expected": "zh"})
        assert not tr.language_ok(text, "ko", 0.5, "en")[0]
    ok, detail = tr.language_ok("Напишите функцию на Python.", "ru", 0.5, "en")
    assert ok and detail["detected"] == "unknown" and detail["guess"] == "mk"      # unverified, not rejected
    # ... but text left in the source's language is wrong however short, and so is another script
    assert tr.language_ok("Explain why the sky is blue, briefly.", "fr", 0.5, "en")[1]["detected"] == "en"
    assert not tr.language_ok("Explain why the sky is blue, briefly.", "fr", 0.5, "en")[0]
    assert not tr.language_ok("Напишите функцию на Python.", "fr", 0.5, "en")[0]


def test_a_translation_that_copies_the_source_is_rejected():
    rec = Record(instruction="Describe how a bicycle's gears make climbing a steep hill easier.",
                 output="Lower gears trade speed for force, so each turn of the pedals needs less effort.")
    state, _, _ = _one(rec, script={"Lower gears": lambda x, lang: x.replace("effort", "work")})
    (row,) = state.rejected
    assert row["reason"] == "copy_of_source" and row["detail"]["field"] == "output"
    assert row["detail"]["similarity"] >= 0.8 and row["record"]["parents"] == [rec.id]


def test_a_source_already_in_the_target_language_is_not_translated():
    rec = Record(instruction="解释为什么天空在白天看起来是蓝色的，并给出两个理由。", output="因为阳光中的蓝光被空气散射得更多。")
    state, t, _ = _one(rec)
    assert not t.seen and not state.translations and not state.rejected
    assert state.summary()["per_language"]["zh"]["skipped_already_in_target"] == 1


def test_cjk_near_duplicate_translations_are_caught_by_rouge_l_unicode():
    a = Record(instruction="Explain why the sky looks blue during a clear summer day.", output="Light scatters.")
    b = Record(instruction="Explain why the sky looks blue during a clear winter day.", output="Light scatters!")
    c = Record(instruction="List three tips for saving money on weekly groceries.", output="Plan meals.")
    t = Translator()
    with StubServer(StubConfig(responder=t)) as srv:
        state, _ = _translate(srv, [a, b, c])
    assert [r.parents for r in state.translations] == [[a.id], [c.id]]
    (row,) = state.rejected
    assert row["reason"] == "rouge_similar" and row["detail"]["source_id"] == b.id
    assert row["detail"]["rouge_max"] > 0.7 and re.search(HAN_RE, row["detail"]["most_similar"])
    from datagen.filters.rouge_novelty import tokenize
    assert tokenize(state.translations[0].instruction, "rouge_score") == []     # why the default tokenizer misses it


HAN_RE = f"[{HAN}]"


def test_every_conversation_turn_is_translated_in_order():
    conv = [{"role": "user", "content": "How do tides work along the coast of a large ocean?"},
            {"role": "assistant", "content": "The moon pulls the water, and the earth turns beneath it every day."},
            {"role": "user", "content": "Why are there two high tides each day instead of one?"},
            {"role": "assistant", "content": "The far side bulges too, because the pull there is weaker."}]
    rec = Record(instruction=conv[0]["content"], output=conv[-1]["content"], conversation=conv,
                 system="You are a patient teacher of science.", method="distill")
    state, t, usage = _one(rec)
    (out,) = state.translations
    assert [x["role"] for x in out.conversation] == ["user", "assistant", "user", "assistant"]
    assert all(re.search(HAN_RE, x["content"]) and not re.search("[a-z]{3}", x["content"]) for x in out.conversation)
    assert out.instruction == out.conversation[0]["content"] and out.output == out.conversation[-1]["content"]
    assert re.search(HAN_RE, out.system) and usage.requests == 5 and out.parents == [rec.id]
    assert out.meta["source_method"] == "distill"


def test_several_languages_count_pass_rates_per_language():
    recs = [Record(instruction="Explain in 3 steps how seeds grow into tall plants.", output="Water, light, time."),
            Record(instruction="Why does ice float on water while stone sinks to the bottom?", output="Density."),
            Record(instruction="Describe what happens when 2 logs burn in an open fireplace.", output="Smoke rises."),
            Record(instruction="Give reasons chocolate can melt quickly inside a warm pocket.", output="Body heat.")]
    t = Translator({"burn": lambda x, lang: fake_translation(x.replace("[[P", "[[Q"), lang)})
    with StubServer(StubConfig(responder=t)) as srv:
        state, _ = _translate(srv, recs, languages=["zh", "fr"])
    s = state.summary()
    assert s["per_language"]["zh"]["passed"] == 3 and s["per_language"]["fr"]["passed"] == 3
    assert s["per_language"]["zh"]["pass_rate"] == 0.75
    assert {r.lang for r in state.translations} == {"zh", "fr"}
    assert s["rejected"] == {"protected_span_lost": 2}


def test_mask_and_unmask_round_trip_keep_literal_token_text():
    text = "Literal [[P1]] text, code `x = 1`, see www.example.org and 2 items."
    m = tr.mask(text)
    assert [k for k, _ in m.spans] == ["mask_like", "inline_code", "url", "number"]
    assert tr.unmask(m.text, m) == text
    with pytest.raises(tr.SpanLost):
        tr.unmask(m.text + " [[P9]]", m)


# -- the flows through the CLI -------------------------------------------------------------------

def _rows(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _latest(out: Path, name: str) -> Path:
    return out / name / (out / name / "LATEST").read_text().strip()


def _publish_source(tmp_path, prefect_env, srv) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("Explain why the sky looks blue during the day.\nGive three tips for saving money on food.\n"
                   "Describe how to brew green tea at 80 degrees.\n")
    p = run_cli(["run", "distill", "--input", str(src), "--name", "ds", "--out", str(tmp_path / "out"),
                 "--base-url", srv.base_url, "--model", "stub", "--cache", str(tmp_path / "c.sqlite"),
                 "--judge", "off"], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    return _latest(tmp_path / "out", "ds")


@pytest.mark.slow
def test_datagen_translate_publishes_a_child_version_with_the_language_mix(tmp_path, prefect_env):
    t = Translator({"money": lambda x, lang: x})          # one record comes back untranslated
    with StubServer(StubConfig(responder=t)) as srv:
        v1 = _publish_source(tmp_path, prefect_env, srv)
        p = run_cli(["translate", "ds", "--to", "zh", "--out", str(tmp_path / "out"), "--base-url", srv.base_url,
                     "--model", "stub", "--cache", str(tmp_path / "c.sqlite")], env=prefect_env)
    assert p.returncode == 0, p.stderr[-3000:]
    v2 = _latest(tmp_path / "out", "ds")
    assert v2.name == "v0002" and v1.name == "v0001"
    m = json.loads((v2 / "manifest.json").read_text())
    assert m["recipe"] == "translate" and m["parent"] == "ds@v0001"
    records = _rows(v2 / "records.jsonl")
    originals = {r["id"]: r for r in _rows(v1 / "records.jsonl")}
    translated = [r for r in records if r["method"] == "translate"]
    assert len(records) == 3 + 2 and len(translated) == 2
    assert all(r["lang"] == "zh" and r["parents"][0] in originals for r in translated)
    assert m["translate"]["language_mix"] == {"en": 3, "zh": 2}
    assert m["translate"]["per_language"]["zh"]["pass_rate"] == round(2 / 3, 4)
    assert m["rejected"] == {"translate": {"copy_of_source": 1}}
    assert [u["role"] for u in m["usage"]] == ["teacher", "translator"] and m["usage"][1]["requests"] == 6
    assert [r["reason"] for r in _rows(v2 / "rejected.jsonl")] == ["copy_of_source"]


def test_translate_option_on_a_recipe_uses_the_translators_own_endpoint(tmp_path, prefect_env):
    src = tmp_path / "in.txt"
    src.write_text("Explain why the sky looks blue during the day.\nDescribe how to brew green tea well.\n")
    t = Translator()
    with StubServer(StubConfig(responder=Script())) as teacher, StubServer(StubConfig(responder=t)) as translator:
        p = run_cli(["run", "distill", "--input", str(src), "--name", "dz", "--out", str(tmp_path / "out"),
                     "--base-url", teacher.base_url, "--model", "stub", "--judge", "off", "--translate", "fr",
                     "--translator-base-url", translator.base_url, "--translator-model", "tr-stub",
                     "--cache", str(tmp_path / "c.sqlite")], env=prefect_env)
        teacher_prompts = [last_user(json.loads(r["body"])) for r in teacher.requests_to("/v1/chat/completions")]
    assert p.returncode == 0, p.stderr[-3000:]
    assert not any("professional translator" in x for x in teacher_prompts) and len(t.seen) == 4
    v = _latest(tmp_path / "out", "dz")
    m = json.loads((v / "manifest.json").read_text())
    assert m["stages"] == ["distill", "judge", "translate"] and m["translator"]["model"] == "tr-stub"
    recs = _rows(v / "records.jsonl")
    assert sorted(r["method"] for r in recs) == ["distill", "distill", "translate", "translate"]
    assert m["translate"]["language_mix"] == {"en": 2, "fr": 2}


@pytest.mark.slow
def test_a_pipelines_translate_stage_then_translate_into_another_dataset(tmp_path, prefect_env):
    src = tmp_path / "in.txt"
    src.write_text("Explain why the sky looks blue during the day.\nDescribe how to brew green tea well.\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"name: pz\ninput: {src}\nstages:\n  - answer: {{}}\n  - translate: {{languages: [zh]}}\n  - publish\n")
    out = tmp_path / "out"
    with StubServer(StubConfig(responder=Translator())) as srv:
        stub = ["--base-url", srv.base_url, "--model", "stub", "--cache", str(tmp_path / "c.sqlite"), "--out", str(out)]
        p = run_cli(["run", "pipeline", "--config", str(cfg), *stub], env=prefect_env)
        assert p.returncode == 0, p.stderr[-3000:]
        q = run_cli(["translate", "pz", "--to", "fr", "--name", "pz-fr", *stub], env=prefect_env)
        assert q.returncode == 0, q.stderr[-3000:]
    m = json.loads((_latest(out, "pz") / "manifest.json").read_text())
    assert m["stages"] == ["1.answer", "translate"] and m["translate"]["language_mix"] == {"en": 2, "zh": 2}
    v = _latest(out, "pz-fr")
    m2 = json.loads((v / "manifest.json").read_text())
    assert v.name == "v0001" and m2["parent"] == "pz@v0001" and (out / "pz" / "LATEST").read_text().strip() == "v0001"
    assert m2["translate"]["language_mix"] == {"en": 2, "fr": 2, "zh": 2}
    # the zh translations are sources too; the stub's word-for-word 'translation' of Han text is empty
    assert m2["translate"]["per_language"]["fr"]["attempted"] == 4
    assert m2["rejected"] == {"translate": {"empty_translation": 2}}


# -- bad input through the CLI: one error line, exit 2, nothing written ----------------------------

def _only_error_line(p):
    lines = [x for x in p.stderr.splitlines() + p.stdout.splitlines() if x.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["translate", "ds", "--to", "zh,xx"], ["--to", "'xx'", "zh, fr, de"]),
    (["translate", "nope", "--to", "zh"], ["nope", "no dataset"]),
    (["translate", "ds@v9", "--to", "zh"], ["no version 'v0009'"]),
    (["run", "distill", "--input", "seeds/175.jsonl", "--translate", "fr,klingon"], ["--translate", "'klingon'"]),
    (["run", "self-instruct", "--seeds", "seeds/175.jsonl", "--translate", "english"], ["--translate", "'english'"]),
])
def test_bad_translate_input_is_one_error_line_and_writes_nothing(tmp_path, args, says):
    out = tmp_path / "out"
    (out / "ds" / "v0001").mkdir(parents=True)
    (out / "ds" / "v0001" / "manifest.json").write_text("{}")
    (out / "ds" / "v0001" / "records.jsonl").write_text(json.dumps(Record(instruction="Hi there.").to_dict()) + "\n")
    (out / "ds" / "LATEST").write_text("v0001")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    p = run_cli([*args, "--out", str(out), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], timeout=120)
    line = _only_error_line(p)
    assert all(s in line for s in says), line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_pipeline_translate_stage_must_be_last_and_name_its_languages(tmp_path):
    from datagen.errors import DatagenError
    from datagen.runspec import add_translation, load_config, pipeline_run

    def run(stages: str):
        path = tmp_path / "p.yaml"
        path.write_text(f"name: p\ninput: {Path('seeds/175.jsonl').resolve()}\nstages:\n{stages}")
        cfg = load_config(path)
        r, teacher_cfg = pipeline_run(config_path=path, cfg=cfg, out=tmp_path, name=None,
                                      teacher_flags={"base_url": "http://127.0.0.1:9/v1", "model": "m"},
                                      judge_flags={})
        add_translation(r, cfg=cfg, config_path=path, teacher_cfg=teacher_cfg, languages=None)
        return r

    assert run("  - answer: {}\n  - translate: {languages: [zh, de]}\n  - publish\n")["translate"]["languages"] == ["zh", "de"]
    with pytest.raises(DatagenError, match=r"stages\[1\]: translate must be the last stage"):
        run("  - translate: [zh]\n  - answer: {}\n")
    with pytest.raises(DatagenError, match=r"stages\[2\].translate.languages: unknown language code 'xx'"):
        run("  - answer: {}\n  - translate: {languages: [xx]}\n")
    with pytest.raises(DatagenError, match="languages: required"):
        run("  - answer: {}\n  - translate: {seed: 3}\n")
