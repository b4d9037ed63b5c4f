"""Cheap quality heuristics: each one a small, pure filter with a name and a reason code.

Teacher output fails in a handful of recognisable ways (refuses, stops mid-sentence, loops, echoes the
prompt, leaks the prompt template, answers in another language). Each failure gets its own filter and
its own reason code so `rejected.jsonl` can say which one fired, and each filter is registered by name
so a YAML chain can list them with their parameters (`build_filter("too_short", min_tokens=3)`).

Multi-turn records (non-empty `conversation`) are judged turn by turn: output checks look at every
assistant turn, instruction checks at every user turn, and the detail names the turn
(`conversation[3]`).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from datagen.errors import DatagenError
from datagen.filters.decontaminate import Decontaminator
from datagen.filters.language import (
    DEFAULT_MIN_LETTERS,
    LanguageFilter,
    base_language,
    detect_language,
    field_text,
    looks_like_code,
    prose_text,
)
from datagen.filters.params import check_dataclass_params
from datagen.filters.verdict import KEEP, Verdict, drop
from datagen.teacher.tokens import count_tokens

# --------------------------------------------------------------------------- record access


def instruction_texts(record: Any) -> list[tuple[str, str]]:
    """(label, text) of what the user asked: the instruction, or every user turn."""
    if record.conversation:
        return [(f"conversation[{i}]", t.get("content") or "")
                for i, t in enumerate(record.conversation) if t.get("role") == "user"]
    return [("instruction", record.instruction or "")]


def output_texts(record: Any) -> list[tuple[str, str]]:
    """(label, text) of what the teacher answered: the output, or every assistant turn."""
    if record.conversation:
        return [(f"conversation[{i}]", t.get("content") or "")
                for i, t in enumerate(record.conversation) if t.get("role") == "assistant"]
    return [("output", record.output or "")]


def all_texts(record: Any) -> list[tuple[str, str]]:
    texts = [("system", record.system or "")]
    if record.conversation:
        texts += [(f"conversation[{i}]", t.get("content") or "") for i, t in enumerate(record.conversation)]
    else:
        texts += [("instruction", record.instruction or ""), ("input", record.input or ""),
                  ("output", record.output or "")]
    return [(label, text) for label, text in texts if text]


def _tail(text: str, width: int = 60) -> str:
    text = text.rstrip()
    return text if len(text) <= width else "…" + text[-width:]


# --------------------------------------------------------------------------- base + registry


class Heuristic:
    """A pure record -> Verdict check. `reasons` lists every code it can emit (for counters)."""

    name: ClassVar[str]
    reason: ClassVar[str]
    reasons: ClassVar[tuple[str, ...]] = ()

    def __call__(self, record: Any) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def filter(self, record: Any) -> Verdict:
        return self(record)


FILTERS: dict[str, type] = {}


def register(cls: type) -> type:
    if not getattr(cls, "reasons", ()):
        cls.reasons = (cls.reason,)
    FILTERS[cls.name] = cls
    return cls


def build_filter(name: str, **params: Any):
    """The filter a config names. Unknown names and parameters are user errors, not tracebacks."""
    cls = FILTERS.get(name)
    if cls is None:
        raise DatagenError(f"unknown filter {name!r}; known filters: {', '.join(sorted(FILTERS))}")
    factory = getattr(cls, "from_config", cls)
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as e:
        accepted = [p for p in inspect.signature(factory).parameters if p not in ("self", "cls")]
        raise DatagenError(f"filter {name!r}: {e}; accepted parameters: {', '.join(accepted)}") from None
    try:
        if dataclasses.is_dataclass(cls):
            params = check_dataclass_params(cls, params)
        return factory(**params)
    except (ValueError, DatagenError) as e:
        raise DatagenError(f"filter {name!r}: {e}") from None


def _non_negative(**values: Any) -> None:
    for key, value in values.items():
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{key} must be a non-negative number, got {value!r}")


def _compile(patterns: Iterable[str], what: str) -> re.Pattern | None:
    patterns = list(patterns)
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.I)
    except re.error as e:
        raise ValueError(f"bad {what} pattern: {e}") from None


# --------------------------------------------------------------------------- empty / echoed


def _has_content(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


@register
@dataclass
class EmptyOutput(Heuristic):
    """An output with no letter or digit (blank, only punctuation or whitespace) teaches nothing."""

    name: ClassVar[str] = "empty_output"
    reason: ClassVar[str] = "empty_output"

    def __call__(self, record: Any) -> Verdict:
        outputs = output_texts(record)
        if record.conversation and not outputs:
            return drop(self.reason, field="conversation", why="no assistant turn")
        for label, text in outputs:
            if not _has_content(text):
                return drop(self.reason, field=label)
        return KEEP


@register
@dataclass
class EchoedOutput(Heuristic):
    """The output only repeats the prompt (instruction, input, both, or one of them several times).

    Compared on lower-cased words, so punctuation and spacing changes still count as an echo. An
    output that is a *part* of the input is not an echo: extraction tasks answer exactly that way.
    """

    name: ClassVar[str] = "echoed_output"
    reason: ClassVar[str] = "echoed_output"

    def __call__(self, record: Any) -> Verdict:
        for label, text, sources in self._pairs(record):
            out = _words(text)
            if not out:
                continue
            for source_name, source in sources:
                src = _words(source)
                if src and len(out) % len(src) == 0 and out == src * (len(out) // len(src)):
                    return drop(self.reason, field=label, echoes=source_name)
        return KEEP

    @staticmethod
    def _pairs(record: Any):
        if not record.conversation:
            sources = [("instruction", record.instruction or ""), ("input", record.input or "")]
            if record.instruction and record.input:
                sources.append(("instruction+input", f"{record.instruction}\n{record.input}"))
            yield "output", record.output or "", sources
            return
        previous_user = ""
        for i, turn in enumerate(record.conversation):
            if turn.get("role") == "user":
                previous_user = turn.get("content") or ""
            elif turn.get("role") == "assistant":
                yield f"conversation[{i}]", turn.get("content") or "", [("user turn", previous_user)]


# --------------------------------------------------------------------------- length


@register
@dataclass
class TooShort(Heuristic):
    """Fewer tokens than a useful example needs (cl100k tokens, the teacher's accounting unit).

    Defaults are low on purpose: "Summarize." with an input, or a one-token classification label
    ("Positive") are legitimate. `min_tokens` sets both limits at once.
    """

    name: ClassVar[str] = "too_short"
    reason: ClassVar[str] = "too_short"
    min_instruction_tokens: int = 2
    min_output_tokens: int = 1
    min_tokens: int | None = None

    def __post_init__(self) -> None:
        _non_negative(min_instruction_tokens=self.min_instruction_tokens,
                  min_output_tokens=self.min_output_tokens, min_tokens=self.min_tokens)
        if self.min_tokens is not None:
            self.min_instruction_tokens = self.min_output_tokens = self.min_tokens

    def __call__(self, record: Any) -> Verdict:
        for texts, limit in ((instruction_texts(record), self.min_instruction_tokens),
                             (output_texts(record), self.min_output_tokens)):
            for label, text in texts:
                tokens = count_tokens(text)
                if tokens < limit:
                    return drop(self.reason, field=label, tokens=tokens, min=limit)
        return KEEP


@register
@dataclass
class TooLong(Heuristic):
    """More tokens than a training example should have (runaway generations, pasted documents).
    `max_tokens` sets both limits at once."""

    name: ClassVar[str] = "too_long"
    reason: ClassVar[str] = "too_long"
    max_instruction_tokens: int = 2048
    max_output_tokens: int = 4096
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        _non_negative(max_instruction_tokens=self.max_instruction_tokens,
                  max_output_tokens=self.max_output_tokens, max_tokens=self.max_tokens)
        if self.max_tokens is not None:
            self.max_instruction_tokens = self.max_output_tokens = self.max_tokens

    def __call__(self, record: Any) -> Verdict:
        for texts, limit in ((instruction_texts(record), self.max_instruction_tokens),
                             (output_texts(record), self.max_output_tokens)):
            for label, text in texts:
                tokens = count_tokens(text)
                if tokens > limit:
                    return drop(self.reason, field=label, tokens=tokens, max=limit)
        return KEEP


# --------------------------------------------------------------------------- refusal

REFUSAL_PATTERNS: tuple[str, ...] = (
    # "I'm sorry, but I can't ..." / "I am afraid, but I cannot ..." / "I apologize, but I won't ..."
    r"\bi(?:'m| am) (?:sorry|afraid),? but (?:i (?:can't|cannot|can not|won't|will not|must decline|"
    r"(?:'m|am) (?:not able|unable))|as an ai)\b",
    r"\bi apologi[sz]e,? but i (?:can't|cannot|can not|won't|will not|(?:'m|am) (?:not able|unable))\b",
    # "I cannot assist with that" -- but not the idiom "I can't help but notice".
    r"\bi (?:can't|cannot|can not|won't|(?:'m|am) (?:not able|unable) to) "
    r"(?:assist|help|comply|fulfil|fulfill)\b(?! but\b)",
    # "As an AI language model, I ..." -- the self-reference is required, so "BERT was trained as a
    # language model on Wikipedia" is not a refusal.
    r"\bas an? (?:ai |artificial intelligence |large |ai-based )?language model\b[^.!?\n]{0,60}?\b(?:i|my|me)\b",
    r"\bas an ai(?: assistant)?,\s*i (?:don't|do not|can't|cannot|am not|'m not)\b",
)


@register
@dataclass
class Refusal(Heuristic):
    """The teacher declined or hid behind AI boilerplate; a student trained on it learns to refuse.

    Matched anywhere in the output, case-insensitively, after curly apostrophes become straight ones.
    `patterns` replaces the built-in list; `extra_patterns` extends it.
    """

    name: ClassVar[str] = "refusal"
    reason: ClassVar[str] = "refusal"
    patterns: tuple[str, ...] = REFUSAL_PATTERNS
    extra_patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._regex = _compile((*self.patterns, *self.extra_patterns), "refusal")

    def __call__(self, record: Any) -> Verdict:
        for label, text in output_texts(record):
            normalised = re.sub(r"\s+", " ", text.replace("\u2019", "'").replace("\u2018", "'"))
            m = self._regex.search(normalised) if self._regex else None
            if m:
                return drop(self.reason, field=label, match=m.group(0))
        return KEEP


# --------------------------------------------------------------------------- code fences

_FENCE_LINE = re.compile(r"^[ \t]{0,3}(`{3,})(.*)$")


def unclosed_fence_line(text: str) -> int | None:
    """1-based line of a ``` fence that is never closed, or None.

    Follows CommonMark: a fence of k backticks is closed only by a line of >= k backticks and nothing
    else, so ```` blocks may show ``` inside them. This is "an odd count of ```" made exact.
    """
    open_len, open_line = 0, 0
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE_LINE.match(line)
        if not m:
            continue
        ticks, rest = m.group(1), m.group(2)
        if not open_len:
            open_len, open_line = len(ticks), number
        elif len(ticks) >= open_len and not rest.strip():
            open_len = 0
    return open_line if open_len else None


@register
@dataclass
class UnbalancedCodeFence(Heuristic):
    """An opened ``` block that never closes breaks every markdown renderer and usually means the
    answer was cut off inside the code."""

    name: ClassVar[str] = "unbalanced_code_fence"
    reason: ClassVar[str] = "unbalanced_code_fence"

    def __call__(self, record: Any) -> Verdict:
        for label, text in output_texts(record):
            line = unclosed_fence_line(text)
            if line is not None:
                return drop(self.reason, field=label, open_line=line,
                            fences=sum(1 for ln in text.splitlines() if _FENCE_LINE.match(ln)))
        return KEEP


# --------------------------------------------------------------------------- truncation

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_DANGLING_CHARS = set(",(-[{&+=<\\–")
_DANGLING_WORDS = {"the", "a", "an", "and", "or", "but", "nor", "of", "with", "from", "because", "than", "whose"}
_LIST_OR_TABLE = re.compile(r"^\s*(?:[-*+•]\s|\d+[.)]\s|[a-zA-Z][.)]\s|\||#{1,6}\s)|\|\s*$")
_RULE = re.compile(r"^\s*([-*_=])(?:\s*\1){2,}\s*$")
_ENDS_WITH_URL = re.compile(r"(?:https?://|www\.)\S+$", re.I)


def _unclosed_bracket(prose: str) -> str | None:
    stack: list[str] = []
    for i, c in enumerate(prose):
        if c in _OPENERS:
            if c == "(" and i and prose[i - 1] in ":;":  # emoticon ":(" opens nothing
                continue
            stack.append(c)
        elif c in _OPENERS.values() and stack and _OPENERS[stack[-1]] == c:
            stack.pop()
    return stack[-1] if stack else None


def _unclosed_quote(prose: str) -> bool:
    if prose.count("\u201c") > prose.count("\u201d"):
        return True
    if prose.count('"') % 2 == 0:
        return False
    last = prose.rfind('"')
    before = prose[last - 1] if last else " "
    after = prose[last + 1] if last + 1 < len(prose) else " "
    # Only an *opening* quote left dangling counts: 12" (inches) or a stray closing quote do not.
    return (before.isspace() or before in "([{:") and not after.isspace()


def truncation_reason(text: str, prose_min_words: int = 8) -> str | None:
    """Why `text` looks cut off, or None when it looks finished."""
    stripped = text.rstrip()
    if not stripped:
        return None
    if unclosed_fence_line(stripped) is not None:
        return "unclosed code fence"
    prose = prose_text(stripped)
    code = looks_like_code(prose)
    bracket = _unclosed_bracket(prose)
    if bracket:
        return f"unclosed '{bracket}'"
    if not code and _unclosed_quote(prose):
        return "unclosed quote"
    last_line = stripped.splitlines()[-1]
    if code or _FENCE_LINE.match(last_line) or _RULE.match(last_line) or _ENDS_WITH_URL.search(last_line):
        return None
    last = last_line[-1]
    if last in _DANGLING_CHARS and not re.search(r"[:;]-?\($", last_line):  # ":(" ends a sentence
        return f"ends with '{last}'"
    if not last.isalnum():
        return None  # . ! ? : ; ) " ` * … 。 emoji, % — all plausible endings
    words = last_line.split()
    if len(words) >= 2 and words[-1] in _DANGLING_WORDS:
        return f"ends with '{words[-1]}'"
    if _LIST_OR_TABLE.search(last_line):
        return None
    if len(words) >= prose_min_words:
        return "no terminal punctuation"
    return None


@register
@dataclass
class Truncated(Heuristic):
    """The answer stops mid-sentence or mid-word (max_tokens hit, stop sequence too eager).

    Signals: an unclosed code fence, bracket or opening quote; a last character that cannot end
    anything (",", "(", "-"); a last word that cannot end a sentence ("the", "and", "of"); or a last
    line of at least `prose_min_words` words with no closing punctuation. Short last lines, list
    items, table rows, headings, URLs, closing fences and unfenced code are exempt: "Positive", a
    bullet list or a function body end without a full stop and are complete.
    """

    name: ClassVar[str] = "truncated"
    reason: ClassVar[str] = "truncated"
    prose_min_words: int = 8

    def __post_init__(self) -> None:
        _non_negative(prose_min_words=self.prose_min_words)

    def __call__(self, record: Any) -> Verdict:
        for label, text in output_texts(record):
            why = truncation_reason(text, self.prose_min_words)
            if why:
                return drop(self.reason, field=label, why=why, tail=_tail(text))
        return KEEP


# --------------------------------------------------------------------------- repetition


def _covered_fraction(words: list[str], n: int) -> tuple[float, str]:
    """Share of word characters inside an n-gram that occurs more than once, and the commonest one."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts: dict[tuple[str, ...], int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    covered = [False] * len(words)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i:i + n] = [True] * n
    total = sum(len(w) for w in words)
    dup = sum(len(w) for w, c in zip(words, covered) if c)
    top = max(counts, key=counts.get) if counts else ()
    return (dup / total if total else 0.0), " ".join(top)


def _top_fraction(words: list[str], n: int) -> tuple[float, str]:
    """Share of word characters taken by the single most frequent n-gram (all its occurrences)."""
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        g = tuple(words[i:i + n])
        counts[g] = counts.get(g, 0) + 1
    if not counts:
        return 0.0, ""
    top = max(counts, key=counts.get)
    if counts[top] < 2:
        return 0.0, ""
    total = sum(len(w) for w in words)
    return sum(len(w) for w in top) * counts[top] / total, " ".join(top)


def _int_keys(thresholds: dict) -> dict[int, float]:
    try:
        return {int(k): float(v) for k, v in dict(thresholds).items()}
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must map n (an integer) to a fraction, got {thresholds!r}") from None


@register
@dataclass
class Repetition(Heuristic):
    """Degenerate loops: the same word n-grams over and over. The rule has the shape of Gopher's
    repetition filter (Rae et al. 2021): for n = 5..10, the share of word characters covered by
    n-grams that occur more than once must stay under a limit that falls as n grows.

    Gopher judged web pages; its limits (0.15 at n=5 down to 0.10 at n=10) drop sound answers that
    are shaped like lists ("Do 3 sets of 10 squats, 3 sets of 10 lunges ..." covers 34% at n=5 and
    nothing at n=6), so the defaults are three times Gopher's. A teacher stuck in a loop until
    max_tokens scores 0.5-1.0 at every n, far above them. Gopher's "top n-gram" rule (n = 2..4) is
    available through `top_ngram_max` but off by default for the same reason.

    Texts under `min_words` words are not judged. Fenced code is ignored by default: code repeats
    itself legitimately.
    """

    name: ClassVar[str] = "repetition"
    reason: ClassVar[str] = "repetition"
    dup_ngram_max: dict = field(default_factory=lambda: {5: 0.45, 6: 0.42, 7: 0.39, 8: 0.36, 9: 0.33, 10: 0.30})
    top_ngram_max: dict = field(default_factory=dict)
    min_words: int = 20
    ignore_code: bool = True

    def __post_init__(self) -> None:
        self.dup_ngram_max = _int_keys(self.dup_ngram_max)
        self.top_ngram_max = _int_keys(self.top_ngram_max)
        _non_negative(min_words=self.min_words)

    def __call__(self, record: Any) -> Verdict:
        for label, text in output_texts(record):
            found = self.excess(text)
            if found:
                return drop(self.reason, field=label, **found)
        return KEEP

    def excess(self, text: str) -> dict[str, Any] | None:
        words = _words(prose_text(text) if self.ignore_code else text)
        if len(words) < self.min_words:
            return None
        for n, limit in sorted(self.top_ngram_max.items()):
            share, gram = _top_fraction(words, n)
            if share > limit:
                return {"rule": "top_ngram", "n": n, "fraction": round(share, 4), "max": limit, "ngram": gram}
        for n, limit in sorted(self.dup_ngram_max.items()):
            share, gram = _covered_fraction(words, n)
            if share > limit:
                return {"rule": "dup_ngram", "n": n, "fraction": round(share, 4), "max": limit, "ngram": gram}
        return None


# --------------------------------------------------------------------------- template leaks

_PLACEHOLDER_NAMES = "input|instruction|output|question|answer|context|prompt|response|examples?|task"
TEMPLATE_LEAK_PATTERNS: tuple[str, ...] = (
    rf"\{{\{{?\s*(?:{_PLACEHOLDER_NAMES})\s*\}}\}}?",  # {input}, {{ instruction }}
    r"<\s*no[\s_-]*input\s*>",
    r"\[/?INST\]",
    r"<</?SYS>>",
    r"<\|[a-z_]+\|>",  # chat special tokens: <|im_start|>, <|endoftext|>, <|eot_id|>
    r"(?m:^[ \t]*#{1,4}[ \t]*(?:Instruction|Response)[ \t]*:)",  # Alpaca prompt headers
    r"#(?:Given|Rewritten|Created) Prompt#",  # Evol-Instruct's prompt markers
)
# Only searched in answers: a question may well be *about* `{{ title }}` in a Jinja template.
OUTPUT_LEAK_PATTERNS: tuple[str, ...] = (
    r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}",  # any unrendered {{variable}}
)


@register
@dataclass
class TemplateLeak(Heuristic):
    """Pieces of a prompt template that reached the data: unfilled placeholders, prompt headers or
    chat special tokens, in any field. `output_patterns` (any `{{variable}}`) are searched in answers
    only. Code (fenced or inline) is never searched, since `{{ name }}` in a Jinja answer or
    `{input}` in a Python f-string is correct there; nor does an answer leak what its prompt itself
    contains (the user asked about it)."""

    name: ClassVar[str] = "template_leak"
    reason: ClassVar[str] = "template_leak"
    patterns: tuple[str, ...] = TEMPLATE_LEAK_PATTERNS
    output_patterns: tuple[str, ...] = OUTPUT_LEAK_PATTERNS
    ignore_code: bool = True

    def __post_init__(self) -> None:
        self._everywhere = _compile(self.patterns, "template_leak")
        self._in_outputs = _compile((*self.patterns, *self.output_patterns), "template_leak")

    def __call__(self, record: Any) -> Verdict:
        prompt = "\n".join(text for _, text in instruction_texts(record)) + "\n" + (record.input or "")
        outputs = {label for label, _ in output_texts(record)}
        for label, text in all_texts(record):
            regex = self._in_outputs if label in outputs else self._everywhere
            if regex is None:
                continue
            searched = prose_text(text) if self.ignore_code else text
            for m in regex.finditer(searched):
                if label in outputs and m.group(0) in prompt:
                    continue
                return drop(self.reason, field=label, placeholder=m.group(0))
        return KEEP


# --------------------------------------------------------------------------- language mismatch

LANGUAGE_NAMES = {
    "af": "afrikaans", "ar": "arabic", "bg": "bulgarian", "bn": "bengali", "ca": "catalan", "cs": "czech",
    "cy": "welsh", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "et": "estonian", "fa": "persian", "fi": "finnish", "fr": "french", "gu": "gujarati", "he": "hebrew",
    "hi": "hindi", "hr": "croatian", "hu": "hungarian", "id": "indonesian", "it": "italian",
    "ja": "japanese", "kn": "kannada", "ko": "korean", "lt": "lithuanian", "lv": "latvian",
    "mk": "macedonian", "ml": "malayalam", "mr": "marathi", "ne": "nepali", "nl": "dutch",
    "no": "norwegian", "pa": "punjabi", "pl": "polish", "pt": "portuguese", "ro": "romanian",
    "ru": "russian", "sk": "slovak", "sl": "slovenian", "so": "somali", "sq": "albanian", "sv": "swedish",
    "sw": "swahili", "ta": "tamil", "te": "telugu", "th": "thai", "tl": "tagalog", "tr": "turkish",
    "uk": "ukrainian", "ur": "urdu", "vi": "vietnamese", "zh": "chinese",
}
_TRANSLATION_WORDS = re.compile(r"translat|tradu|übersetz|vertaal|перев|翻译|翻譯|翻訳|번역", re.I)


@register
@dataclass
class LanguageMismatch(Heuristic):
    """The answer is in another language than the question: a student would learn to switch.

    Fires only when both sides are confidently detected (top probability >= `min_prob`, enough
    letters; see language.py) and their base languages differ. With `allow_translation`, a prompt
    that asks for a translation or names the output's language ("... in French") is exempt.
    """

    name: ClassVar[str] = "language_mismatch"
    reason: ClassVar[str] = "language_mismatch"
    min_prob: float = 0.9
    min_letters: int = DEFAULT_MIN_LETTERS
    allow_translation: bool = True

    def __post_init__(self) -> None:
        _non_negative(min_prob=self.min_prob, min_letters=self.min_letters)

    def __call__(self, record: Any) -> Verdict:
        asked = detect_language(field_text(record, "instruction"), min_letters=self.min_letters)
        answered = detect_language(field_text(record, "output"), min_letters=self.min_letters)
        if not (asked.known and answered.known) or min(asked.prob, answered.prob) < self.min_prob:
            return KEEP
        if base_language(asked.lang) == base_language(answered.lang):
            return KEEP
        if self.allow_translation and self._asks_for(record, answered.lang):
            return KEEP
        return drop(self.reason, instruction=asked.as_detail(), output=answered.as_detail())

    @staticmethod
    def _asks_for(record: Any, lang: str) -> bool:
        prompt = f"{field_text(record, 'instruction')}\n{record.input or ''}"
        name = LANGUAGE_NAMES.get(base_language(lang), "")
        return bool(_TRANSLATION_WORDS.search(prompt)) or (bool(name) and name in prompt.casefold())


# --------------------------------------------------------------------------- non-heuristic filters

FILTERS[LanguageFilter.name] = LanguageFilter
FILTERS[Decontaminator.name] = Decontaminator

# A sensible order for a chain: cheapest and most specific reasons first, so `rejected.jsonl` names
# the most telling one (an empty answer is "empty_output", not also "too_short").
DEFAULT_CHAIN: tuple[str, ...] = (
    "empty_output", "echoed_output", "too_short", "too_long", "unbalanced_code_fence", "truncated",
    "template_leak", "refusal", "repetition", "language_mismatch",
)


def default_heuristics(names: Iterable[str] = DEFAULT_CHAIN) -> list[Heuristic]:
    return [build_filter(n) for n in names]
