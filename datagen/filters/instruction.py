"""Self-Instruct's rules for a machine-written instruction (DESIGN §5), one reason code each.

These reproduce the released code's decisions: 4..150 whitespace words, a word-boundary blacklist,
no "Write a program" prefix, no punctuation or non-ASCII first character.
"""
from __future__ import annotations

import re
import string

from datagen.filters.verdict import KEEP, Verdict, drop

SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                           "map", "maps", "draw", "plot", "go to")
# Alpaca adds media and diagram words a text-only model cannot honour.
ALPACA_BLACKLIST = SELF_INSTRUCT_BLACKLIST + ("video", "audio", "music", "flowchart", "diagram")


def _blacklist_pattern(words: tuple[str, ...]) -> re.Pattern:
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"\b({alternatives})\b", re.IGNORECASE)


class InstructionRules:
    """All of Self-Instruct's instruction checks; the first failing one names the reason."""

    def __init__(self, min_words: int = 4, max_words: int = 150,
                 blacklist: tuple[str, ...] = SELF_INSTRUCT_BLACKLIST):
        self.min_words = min_words
        self.max_words = max_words
        self.blacklist = blacklist
        self._blacklist_re = _blacklist_pattern(blacklist)

    def __call__(self, instruction: str) -> Verdict:
        if not instruction:
            return drop("empty_instruction")
        words = len(instruction.split())
        if words < self.min_words:
            return drop("too_few_words", words=words, min=self.min_words)
        if words > self.max_words:
            return drop("too_many_words", words=words, max=self.max_words)
        hit = self._blacklist_re.search(instruction)
        if hit:
            return drop("blacklisted_word", word=hit.group(0))
        if instruction.startswith("Write a program"):
            return drop("write_a_program")
        if instruction[0] in string.punctuation:
            return drop("starts_with_punctuation", char=instruction[0])
        if not instruction[0].isascii():
            return drop("starts_with_non_ascii", char=instruction[0])
        return KEEP
