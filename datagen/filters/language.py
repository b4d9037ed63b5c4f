"""Language identification for records, and the filter that keeps only the wanted languages.

langdetect samples character n-grams at random, so the same text can get a different answer on a
different run; seeding the factory once at import makes every call reproducible (each detector
reseeds from `DetectorFactory.seed` before it samples, so call order does not matter either).

The "unknown" rule. langdetect guesses wildly on short strings ("Yes" -> Turkish, "Paris" ->
Indonesian, "Convert 10 miles to kilometers." -> Norwegian) and on source code. So before detecting,
fenced code blocks, inline code, URLs and e-mail addresses are removed; if what is left has fewer than
`min_letters` letters (default 30), or most of its lines look like code, the answer is
`unknown` with probability 0.0. An unknown field never causes a drop: we only drop what we can tell
is in the wrong language, and the detail still says "unknown" so the decision is visible.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from langdetect import DetectorFactory, detect_langs
from langdetect.detector_factory import PROFILES_DIRECTORY
from langdetect.lang_detect_exception import LangDetectException

from datagen.errors import DatagenError
from datagen.filters.params import number, strings
from datagen.filters.verdict import Verdict, drop

DetectorFactory.seed = 0

UNKNOWN = "unknown"
TEXT_FIELDS = ("instruction", "input", "output", "system")
DEFAULT_MIN_LETTERS = 30

_FENCED_CODE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}\1[ \t]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_CODE_LINE = re.compile(
    r"""^\s*(?:def\s|class\s|import\s|from\s+\S+\s+import\b|return\b|\#include\b|function\b|
         (?:const|let|var|public|private|static|void|int|float|double)\s|for\s*\(|if\s*\(|while\s*\(|
         (?:SELECT|INSERT|UPDATE|DELETE|CREATE)\s)
      |[;{}]\s*$|^\s*[}\])]|\w\s*(?:==|!=|\+=|-=|=>|->|:=)\s*|^\s*\w+(?:\.\w+)*\(.*\)\s*;?\s*$""",
    re.X,
)


@dataclass(frozen=True)
class LanguageGuess:
    lang: str
    prob: float
    # Probability per language as langdetect reported it (languages under ~0.1 are left out).
    probs: tuple[tuple[str, float], ...] = ()

    @property
    def known(self) -> bool:
        return self.lang != UNKNOWN

    def prob_of(self, languages: Iterable[str]) -> float:
        """Probability mass of any of `languages`; "zh" covers langdetect's "zh-cn" and "zh-tw"."""
        wanted = set(languages)
        return sum(p for lang, p in self.probs if lang in wanted or base_language(lang) in wanted)

    def as_detail(self) -> dict[str, Any]:
        return {"lang": self.lang, "prob": round(self.prob, 4)}


@lru_cache(maxsize=1)
def known_languages() -> frozenset[str]:
    """Codes langdetect can answer, plus their base languages ("zh" for "zh-cn" and "zh-tw")."""
    codes = set(os.listdir(PROFILES_DIRECTORY))
    return frozenset(codes | {base_language(c) for c in codes})


def base_language(code: str) -> str:
    return code.split("-", 1)[0].lower()


def prose_text(text: str) -> str:
    """The part of `text` that is natural language: code, URLs and addresses say nothing about it."""
    text = _FENCED_CODE.sub("\n", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _URL.sub(" ", text)
    return _EMAIL.sub(" ", text)


def looks_like_code(text: str) -> bool:
    """Most non-empty lines read as source code (used where code has no fences around it)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False
    code_lines = sum(1 for ln in lines if _CODE_LINE.search(ln))
    return code_lines * 2 > len(lines)


def detect_language(text: str, *, min_letters: int = DEFAULT_MIN_LETTERS) -> LanguageGuess:
    """Best guess for `text`, or `unknown` when the text is too short or too code-like to judge."""
    prose = prose_text(text or "")
    if sum(c.isalpha() for c in prose) < min_letters or looks_like_code(prose):
        return LanguageGuess(UNKNOWN, 0.0)
    try:
        ranked = detect_langs(prose)
    except LangDetectException:
        return LanguageGuess(UNKNOWN, 0.0)
    if not ranked:
        return LanguageGuess(UNKNOWN, 0.0)
    probs = tuple((str(r.lang), float(r.prob)) for r in ranked)
    return LanguageGuess(probs[0][0], probs[0][1], probs)


def field_text(record: Any, field: str) -> str:
    """Text of a record field. Multi-turn records keep their turns in `conversation`, so there
    "instruction" means every user turn and "output" every assistant turn, joined."""
    conversation = getattr(record, "conversation", None) or []
    role = {"instruction": "user", "output": "assistant"}.get(field)
    if conversation and role:
        return "\n\n".join(t.get("content") or "" for t in conversation if t.get("role") == role)
    return getattr(record, field, "") or ""


def detect_fields(
    record: Any, fields: Iterable[str] = ("instruction", "output"), *, min_letters: int = DEFAULT_MIN_LETTERS
) -> dict[str, LanguageGuess]:
    return {f: detect_language(field_text(record, f), min_letters=min_letters) for f in fields}


class LanguageFilter:
    """Keep records whose fields are in one of the `allowed` languages.

    A field fails when the probability langdetect gives to the allowed languages together is under
    `min_prob`; unknown fields (see the module docstring) pass. Every verdict, kept or dropped,
    carries {field: {"lang", "prob"}} so the flow can record what was detected.
    """

    name = "language"
    reason = "language"
    reasons = ("language",)

    def __init__(
        self,
        allowed: Iterable[str] = ("en",),
        fields: Iterable[str] = ("instruction", "output"),
        min_prob: float = 0.5,
        min_letters: int = DEFAULT_MIN_LETTERS,
    ) -> None:
        # A code langdetect never answers ("xx-nope", "english") would drop every record it can judge.
        self.allowed = tuple(a.lower() for a in strings("allowed", allowed, allow_empty=False))
        unknown = [a for a in self.allowed if a not in known_languages()]
        if unknown:
            raise DatagenError(f"allowed: unknown language code {unknown[0]!r}; "
                               f"langdetect knows {', '.join(sorted(known_languages()))}")
        self.fields = strings("fields", fields, allow_empty=False)
        bad = [f for f in self.fields if f not in TEXT_FIELDS]
        if bad:
            raise DatagenError(f"fields: unknown field {bad[0]!r}; choose from {', '.join(TEXT_FIELDS)}")
        self.min_prob = number("min_prob", min_prob, low=0, high=1)
        self.min_letters = number("min_letters", min_letters, integer=True, low=0)

    def __call__(self, record: Any) -> Verdict:
        guesses = detect_fields(record, self.fields, min_letters=self.min_letters)
        detail = {f: g.as_detail() for f, g in guesses.items()}
        failed = [f for f, g in guesses.items() if g.known and g.prob_of(self.allowed) < self.min_prob]
        if failed:
            return drop(self.reason, **detail)
        return Verdict(True, "", detail)

    filter = __call__
