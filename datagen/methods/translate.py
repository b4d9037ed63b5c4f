"""Translation of records by the translator role, with the spans a translation must not touch masked.

Per text (instruction, input, output, system, or each turn of a conversation):

1. **Mask.** Protected spans are replaced by numbered tokens `[[P1]]`, `[[P2]]`, ... before the text
   is sent. Protected, in this order of precedence (a span inside an earlier kind is part of it):
   text that already looks like a mask token, fenced code blocks (``` or ~~~), inline code, URLs
   (http(s)://, www.) and e-mail addresses, placeholders (`{name}`, `{{name}}`, `%(name)s`, `%s`,
   `<noinput>`), Markdown line structure (the marker at the start of a line: `#` headings, `-`/`*`/`+`
   bullets, `1.` / `1)` numbered items, `>` quotes, horizontal rules, with their indentation) and
   numbers (`42`, `3.14`, `1,000`, `12:30`; not digits inside a word such as `H2O` or `mp3`). Emphasis
   (`**bold**`) and tables are not masked: the words inside them are the translator's to translate.
2. **Check.** Every token must come back exactly once (full-width brackets and spaces inside the
   brackets are tolerated; models writing CJK often produce them), no token may be invented, and a
   Markdown marker's token must still start its line. Otherwise the record is rejected as
   `protected_span_lost`, naming the field, the span and what happened to it. Then tokens are unmasked.
3. **Copy.** A field whose prose (tokens removed) is at least `copy_threshold` similar, character by
   character (normalised Indel similarity), to the source's prose is `copy_of_source`; fields with
   fewer than 20 letters of prose are not judged ("Paris" may well stay "Paris").
4. **Language.** Each field with enough letters, and all fields together, are identified by
   langdetect (DetectorFactory.seed = 0, see datagen.filters.language; code, URLs removed first). A
   field that is identifiable and gives the target less than `min_prob` is `wrong_language` with
   the detected and expected codes. Chinese, Japanese and Korean are decided by script (`cjk_guess`).
   A record too short to identify is kept, with `detected: unknown`, and counted as unverified in the
   manifest; so is a short text given to another language of the target's script (see `language_ok`).

The translations of one language then go through ROUGE-L novelty (instruction + input, the Unicode
tokenizer, so CJK text has tokens) in source order: a near-duplicate of an earlier translation is
`rouge_similar`. Plain Python over `await translator.complete(...)`; no Prefect here.
"""
from __future__ import annotations

import asyncio
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Indel

from datagen.errors import DatagenError
from datagen.filters.language import UNKNOWN, LanguageGuess, base_language, detect_language, known_languages, prose_text
from datagen.filters.rouge_novelty import RougeNovelty
from datagen.methods.common import capped, check_max_tokens, rouge_scores
from datagen.methods.evol import derived_seed
from datagen.methods.templates import Template, load_template
from datagen.records import Record
from datagen.teacher.client import BudgetExhausted
from datagen.teacher.tokens import count_tokens

STAGE = "translate"
TRANSLATE_PARAMS = {"temperature": 0.0, "max_tokens": 4096}
COPY_MIN_LETTERS = 20          # prose shorter than this is not judged a copy
LANG_MIN_LETTERS = 20          # langdetect's answer on less is noise (see datagen.filters.language)
DETECTOR = "langdetect (DetectorFactory.seed = 0); Chinese, Japanese and Korean by script"
ANSWER_CHARS = 500             # of the translator's answer kept in a rejected row's detail

# English names for the prompt, for every code langdetect can answer.
LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian", "fi": "Finnish", "fr": "French", "gu": "Gujarati", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mr": "Marathi", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "so": "Somali",
    "sq": "Albanian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai",
    "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "zh": "Simplified Chinese", "zh-cn": "Simplified Chinese", "zh-tw": "Traditional Chinese",
}


def supported_languages() -> list[str]:
    return sorted(c for c in LANGUAGE_NAMES if c in known_languages())


def parse_languages(text: Any, flag: str) -> list[str]:
    """`zh,fr,de` (or a YAML list) -> ["zh", "fr", "de"]; an unknown code is one error naming the flag."""
    if text is None:
        return []
    parts = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise DatagenError(f"{flag}: expected language codes such as zh,fr,de, got {part!r}")
        code = part.strip().lower().replace("_", "-")
        if not code:
            continue
        if code not in LANGUAGE_NAMES or code not in known_languages():
            raise DatagenError(f"{flag}: unknown language code '{part.strip()}' (valid codes include zh, fr, de, es, "
                               f"ja, ko, ru, pt, it, ar; all: {', '.join(supported_languages())})")
        if code not in out:
            out.append(code)
    if isinstance(text, str) and text.strip() and not out:
        raise DatagenError(f"{flag}: expected language codes such as zh,fr,de, got '{text}'")
    return out


@dataclass
class TranslateParams:
    languages: list[str] = field(default_factory=list)
    seed: int = 42
    max_tokens: int | None = None
    copy_threshold: float = 0.8        # character similarity to the source at or above which a field is a copy
    min_prob: float = 0.5              # langdetect probability the target language needs
    rouge_threshold: float = 0.7       # ROUGE-L (unicode tokens) among one language's translations
    prompts_dir: str | None = None

    def __post_init__(self) -> None:
        self.languages = parse_languages(self.languages, "languages")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected a whole number, got {self.seed!r}")
        check_max_tokens(self.max_tokens)
        for name in ("copy_threshold", "min_prob", "rouge_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name}: must be a number between 0 and 1, got {v!r}")


@dataclass(frozen=True)
class TranslateTemplates:
    translate: Template

    @classmethod
    def load(cls, prompts_dir: str | None = None) -> "TranslateTemplates":
        return cls(translate=load_template("translate", "translate", prompts_dir, {"language", "text"}))

    def hashes(self) -> dict[str, str]:
        return {self.translate.name: self.translate.sha256}


# -- masking -------------------------------------------------------------------------------------

SPAN_KINDS = ("mask_like", "code_block", "inline_code", "url", "placeholder", "markdown", "number")
_BRACKET_OPEN = "[\\[\uff3b]"       # ASCII or full-width
_BRACKET_CLOSE = "[\\]\uff3d]"
_TOKEN = re.compile(f"{_BRACKET_OPEN}{{2}}\\s*[Pp\uff30]\\s*(\\d+)\\s*{_BRACKET_CLOSE}{{2}}")
_SPANS = re.compile(
    "|".join(f"(?P<{name}>{pattern})" for name, pattern in (
        ("mask_like", _TOKEN.pattern),
        ("code_block", r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}(?P=fence)[ \t]*$|\Z)"),
        ("inline_code", r"`[^`\n]+`"),
        ("url", r"(?<![A-Za-z0-9])(?:https?://|www\.)[^\s<>()\[\]]+[^\s<>()\[\].,;:!?'\"]|\b[\w.+-]+@[\w-]+\.[\w.-]*\w"),
        ("placeholder", r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}|\{[A-Za-z_][\w.]*\}|%\([A-Za-z_]\w*\)[sdifr]|%[sd]\b"
                        r"|<noinput>"),
        ("markdown", r"^[ \t]*(?:#{1,6}(?=[ \t])|[-*+](?=[ \t])|\d{1,9}[.)](?=[ \t])|>+|(?:[-*_][ \t]*){3,}$)"),
        ("number", r"(?<![\w.,])[-+]?\d+(?:[.,:]\d+)*(?![\w])"),
    )),
    re.M | re.S,
)


@dataclass
class Masked:
    text: str                      # with [[Pn]] tokens
    spans: list[tuple[str, str]]   # (kind, original text), token n = index n-1

    def prose(self) -> str:
        return _TOKEN.sub(" ", self.text)


def mask(text: str) -> Masked:
    spans: list[tuple[str, str]] = []

    def sub(m: re.Match) -> str:
        kind = next(k for k in SPAN_KINDS if m.group(k) is not None)
        spans.append((kind, m.group(0)))
        return f"[[P{len(spans)}]]"

    return Masked(_SPANS.sub(sub, text), spans)


class SpanLost(Exception):
    def __init__(self, detail: dict[str, Any]):
        super().__init__(detail.get("problem", "span lost"))
        self.detail = detail


def unmask(translated: str, masked: Masked) -> str:
    """The translation with every token replaced by its span; SpanLost when a token is missing,
    repeated, invented, or a Markdown marker no longer starts its line."""
    found = Counter(int(m.group(1)) for m in _TOKEN.finditer(translated))
    for n, (kind, original) in enumerate(masked.spans, 1):
        if found[n] != 1:
            raise SpanLost({"span": original[:200], "kind": kind, "token": f"[[P{n}]]", "found": found[n],
                            "problem": "missing" if found[n] == 0 else "repeated"})
    invented = sorted(n for n in found if not 1 <= n <= len(masked.spans))
    if invented:
        raise SpanLost({"token": f"[[P{invented[0]}]]", "kind": "unknown", "problem": "invented", "found": 1,
                        "span": ""})
    for m in _TOKEN.finditer(translated):
        kind, original = masked.spans[int(m.group(1)) - 1]
        line_start = translated.rfind("\n", 0, m.start()) + 1
        if kind == "markdown" and translated[line_start:m.start()].strip():
            raise SpanLost({"span": original[:200], "kind": kind, "token": m.group(0), "found": 1,
                            "problem": "moved off the start of its line"})
    return _TOKEN.sub(lambda m: masked.spans[int(m.group(1)) - 1][1], translated)


# -- checks --------------------------------------------------------------------------------------

_DENSE = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\u0e00-\u0e7f]")


def letters(text: str) -> int:
    """Letters, a Han, kana, Hangul or Thai character counting as 3: one of them carries about as much
    as a short word, and langdetect identifies these scripts from a few characters."""
    return sum(c.isalpha() for c in text) + 2 * len(_DENSE.findall(text))


def similarity(a: str, b: str) -> float:
    """Character-level similarity of two texts (NFKC, case-folded, whitespace collapsed): 1 = the same."""
    def norm(t: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", t).casefold().split())
    return float(Indel.normalized_similarity(norm(a), norm(b)))


_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


def cjk_guess(prose: str) -> LanguageGuess | None:
    """Chinese, Japanese or Korean told apart by script, for text written mostly in them: Hangul is
    Korean, kana Japanese, Han alone Chinese. langdetect, on short Han-only text, answers Korean or
    Vietnamese with high confidence ("将下列句子翻译成英文。" -> ko 0.86, "用 Python 写一个函数。" -> vi 1.0;
    measured with langdetect 1.0.9, seed 0), which no Han-only text is."""
    han, kana, hangul = (len(r.findall(prose)) for r in (_HAN, _KANA, _HANGUL))
    cjk = han + kana + hangul
    latin = sum(c.isalpha() for c in prose) - cjk
    if not cjk or 3 * cjk < latin:
        return None
    if hangul * 2 >= cjk:
        lang, share = "ko", hangul / cjk
    elif kana * 10 >= cjk:
        lang, share = "ja", (han + kana) / cjk
    else:
        lang, share = "zh", han / cjk
    return LanguageGuess(lang, share, ((lang, share),))


_SCRIPTS = {**dict.fromkeys(("ru", "uk", "bg", "mk"), "Cyrillic"), **dict.fromkeys(("ar", "fa", "ur"), "Arabic"),
            **dict.fromkeys(("hi", "mr", "ne"), "Devanagari"), **dict.fromkeys(("zh", "ja", "ko"), "CJK"),
            "el": "Greek", "he": "Hebrew", "th": "Thai"}
SURE_LETTERS = 60   # under this, langdetect confuses neighbours written alike (ru/bg/mk, es/ca/pt, ...)


def language_ok(text: str, target: str, min_prob: float, source: str = "") -> tuple[bool, dict[str, Any]]:
    """(passes, detail): unknown (too short or code) passes with detected 'unknown'. So does a short
    text langdetect gives to another language written in the target's script, unless that language
    is the source's (measured: "Напишите функцию на Python." -> mk 0.86, "Объясните, почему небо
    голубое." -> bg 1.0); it is counted unverified, with the guess in `guess`."""
    prose = prose_text(text)
    n = letters(prose)
    guess = (cjk_guess(prose) or detect_language(text, min_letters=1)) if n >= LANG_MIN_LETTERS \
        else LanguageGuess(UNKNOWN, 0.0)
    detail = {"detected": guess.lang, "prob": round(guess.prob, 4), "expected": target}
    if not guess.known:
        return True, detail
    wanted = {target, base_language(target)}
    if guess.prob_of(wanted) >= min_prob:
        return True, detail
    got = base_language(guess.lang)
    if (n < SURE_LETTERS and got != base_language(source or "-") and cjk_guess(prose) is None
            and _SCRIPTS.get(got, "Latin") == _SCRIPTS.get(base_language(target), "Latin")):
        return True, {**detail, "detected": UNKNOWN, "guess": guess.lang}
    return False, detail


def clean_answer(text: str, source: str) -> str:
    """The translation as the model wrote it, without a wrapping code fence or quotes it added."""
    t = text.strip()
    fence = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", t, re.S)
    if fence and not source.strip().startswith("```"):
        t = fence.group(1).strip()
    for q1, q2 in (('"', '"'), ("\u201c", "\u201d"), ("\u300c", "\u300d")):
        if len(t) > 2 and t.startswith(q1) and t.endswith(q2) and not source.strip().startswith(q1):
            t = t[1:-1].strip()
    return t


# -- the method ----------------------------------------------------------------------------------

class Rejected(Exception):
    def __init__(self, reason: str, detail: dict[str, Any], keys: list[str]):
        super().__init__(reason)
        self.reason, self.detail, self.keys = reason, detail, keys


def texts_of(record: Record) -> list[tuple[str, str]]:
    """(field, text) to translate: system, then every turn of a conversation or instruction/input/output."""
    out = [("system", record.system)] if record.system.strip() else []
    if record.conversation:
        return out + [(f"conversation[{i}]", t["content"]) for i, t in enumerate(record.conversation)]
    return out + [(f, getattr(record, f)) for f in ("instruction", "input", "output") if getattr(record, f).strip()]


class TranslateState:
    def __init__(self, records: list[Record], params: TranslateParams, templates: TranslateTemplates):
        self.inputs, self.params, self.templates = records, params, templates
        self.translations: list[Record] = []
        self.rejected: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self.per_language: dict[str, Counter] = {lang: Counter() for lang in params.languages}
        self.spans: Counter = Counter()
        self.budget_stop = ""

    def reject(self, src: Record, lang: str, reason: str, detail: dict[str, Any], record: Record | None = None) -> None:
        self.per_language[lang][f"rejected.{reason}"] += 1
        self.counts[f"rejected.{reason}"] += 1
        rec = record or Record(instruction=src.instruction, input=src.input, output=src.output, lang=lang,
                               method="translate", parents=[src.id])
        self.rejected.append({"id": rec.id, "stage": STAGE, "reason": reason,
                              "detail": {"language": lang, "source_id": src.id, **detail},
                              "text": rec.instruction, "record": rec.to_dict()})

    async def run(self, translator: Any) -> None:
        jobs = [(src, lang) for lang in self.params.languages for src in self.inputs]
        results = await asyncio.gather(*(self._one(src, lang, translator) for src, lang in jobs),
                                       return_exceptions=True)
        novelty = {lang: RougeNovelty(threshold=self.params.rouge_threshold, tokenizer="unicode")
                   for lang in self.params.languages}
        for (src, lang), res in zip(jobs, results):
            stats = self.per_language[lang]
            stats["attempted"] += 1
            if isinstance(res, BudgetExhausted):
                self.budget_stop = res.reason
                stats["not_translated.budget"] += 1
                continue
            if isinstance(res, Rejected):
                self.reject(src, lang, res.reason, res.detail)
                continue
            if isinstance(res, BaseException):
                raise res
            if res is None:              # already in the target language
                stats["skipped.already_in_target"] += 1
                continue
            verdict = novelty[lang].check_and_add(f"{res.instruction}\n{res.input}".strip())
            res.scores["rouge_max"] = verdict.detail.get("rouge_max", 0.0)
            if not verdict.keep:
                self.reject(src, lang, verdict.reason, rouge_scores(verdict.detail), record=res)
                continue
            self.translations.append(res)
            stats["passed"] += 1
            stats["verified" if res.scores["translate"]["detected"] != "unknown" else "unverified"] += 1

    async def _ask(self, text: str, lang: str, translator: Any, src: Record, where: str) -> tuple[str, Masked, str]:
        masked = mask(text)
        for kind, _ in masked.spans:
            self.spans[kind] += 1
        p = self.params
        tokens = count_tokens(masked.text)
        sampling = capped(TRANSLATE_PARAMS, p.max_tokens, min(TRANSLATE_PARAMS["max_tokens"], 64 + 3 * tokens))
        prompt = self.templates.translate.render(language=LANGUAGE_NAMES[lang], text=masked.text)
        answer = await translator.complete(prompt, {**sampling, "seed": derived_seed(p.seed, src.id, lang, where)},
                                           sample=0, kind="translate", api="chat")
        if answer.finish_reason == "length":
            raise Rejected("translation_cut_by_length", {"field": where, "max_tokens": sampling["max_tokens"],
                                                         "answer": answer.text[:ANSWER_CHARS]}, [answer.key])
        out = clean_answer(answer.text, masked.text)
        if not out:
            raise Rejected("empty_translation", {"field": where}, [answer.key])
        return out, masked, answer.key

    async def _one(self, src: Record, lang: str, translator: Any) -> Record | None:
        p = self.params
        fields = texts_of(src)
        whole_source = "\n\n".join(t for _, t in fields)
        source_ok, source_guess = language_ok(whole_source, lang, 0.9)
        if source_guess["detected"] != UNKNOWN and source_ok:
            return None
        source_lang = src.lang or source_guess.get("guess", source_guess["detected"])
        answers = await asyncio.gather(*(self._ask(t, lang, translator, src, f) for f, t in fields))
        keys = [k for _, _, k in answers]
        done: dict[str, str] = {}
        sims: dict[str, float] = {}
        for (where, original), (out, masked, _) in zip(fields, answers):
            said = {"answer": out[:ANSWER_CHARS]}
            try:
                text = unmask(out, masked)
            except SpanLost as e:
                raise Rejected("protected_span_lost", {"field": where, **e.detail, **said}, keys) from None
            prose_src, prose_out = masked.prose(), _TOKEN.sub(" ", out)
            if letters(prose_src) >= COPY_MIN_LETTERS:
                sims[where] = round(similarity(prose_src, prose_out), 4)
                if sims[where] >= p.copy_threshold:
                    raise Rejected("copy_of_source", {"field": where, "similarity": sims[where],
                                                      "threshold": p.copy_threshold, **said}, keys)
            if letters(prose_out) >= LANG_MIN_LETTERS:
                ok, detail = language_ok(prose_out, lang, p.min_prob, source_lang)
                if not ok:
                    raise Rejected("wrong_language", {"field": where, **detail, **said}, keys)
            done[where] = text
        ok, overall = language_ok("\n\n".join(_TOKEN.sub(" ", a[0]) for a in answers), lang, p.min_prob, source_lang)
        if not ok:
            raise Rejected("wrong_language", {"field": "all", **overall}, keys)
        return self._record(src, lang, done, keys, overall, sims, translator)

    def _record(self, src: Record, lang: str, done: dict[str, str], keys: list[str], overall: dict[str, Any],
                sims: dict[str, float], translator: Any) -> Record:
        conversation = [{"role": t["role"], "content": done[f"conversation[{i}]"]}
                        for i, t in enumerate(src.conversation)]
        if conversation:
            instruction = next((t["content"] for t in conversation if t["role"] == "user"), "")
            output = next((t["content"] for t in reversed(conversation) if t["role"] == "assistant"), "")
            input_ = ""
        else:
            instruction, input_, output = (done.get(f, "") for f in ("instruction", "input", "output"))
        return Record(instruction=instruction, input=input_, output=output, conversation=conversation,
                      system=done.get("system", ""), lang=lang, method="translate", parents=[src.id],
                      round=src.round, op=src.op, teacher={"model": translator.model, "requests": keys},
                      scores={"translate": {"detected": overall["detected"], "prob": overall["prob"],
                                            "similarity_to_source": sims}},
                      meta={"source_method": src.method, "source_lang": src.lang or None, "target": lang})

    def summary(self) -> dict[str, Any]:
        """The manifest's `translate` section (the language mix of the whole version is added by the flow)."""
        per = {}
        for lang, c in self.per_language.items():
            attempted = c["attempted"] - c["skipped.already_in_target"] - c["not_translated.budget"]
            per[lang] = {"attempted": c["attempted"], "passed": c["passed"], "verified": c["verified"],
                         "unverified": c["unverified"],
                         "pass_rate": round(c["passed"] / attempted, 4) if attempted else None,
                         "skipped_already_in_target": c["skipped.already_in_target"],
                         "not_translated_budget": c["not_translated.budget"],
                         "rejected": {k.split(".", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("rejected.")}}
        return {"languages": list(self.params.languages), "per_language": per,
                "rejected": {k.split(".", 1)[1]: v for k, v in sorted(self.counts.items()) if k.startswith("rejected.")},
                "protected_spans": dict(sorted(self.spans.items())), "detector": DETECTOR,
                "copy_threshold": self.params.copy_threshold, "min_prob": self.params.min_prob,
                "rouge": {"tokenizer": "unicode", "threshold": self.params.rouge_threshold,
                          "text": "instruction + input, among one language's translations"}}
