"""A scripted responder for Evol-Instruct, distillation and judge requests, in the expected *shape*.

Exact responses matter in these tests (which rule fires on which text), so each request kind is
recognised by its template and answered from a script keyed on words of the instruction. It is no
evidence that generation works; the e2e tests on the embedded llama.cpp teacher are.
"""
from __future__ import annotations

import hashlib
import json
import re

GOOD_ANSWER = ("Here is a careful answer. First, consider the main factors involved and how they interact "
               "over time. Second, weigh the evidence from several independent sources. Third, draw a "
               "conclusion that follows from the evidence and note what remains uncertain.")


def last_user(body: dict) -> str:
    if "prompt" in body:
        return body["prompt"]
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def kind_of(body: dict) -> str:
    text = last_user(body)
    if "#Given Prompt#:" in text:
        return "evolve"
    if "Reply with exactly one of these two phrases" in text:
        return "equal"
    if "You are an impartial grader" in text:
        return "score"
    if "You play the USER" in text:
        return "followup"
    return "answer"


def given(text: str) -> str:
    m = re.search(r"#Given Prompt#:\n(.*)\n#(Rewritten|Created) Prompt#:", text, re.S)
    return m.group(1).strip() if m else ""


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


class Script:
    """Behaviour by marker word in the instruction being evolved / answered.

    evolve: old instruction -> old + " Step <hash>." unless `rewrite` maps a marker to a text
    answer: GOOD_ANSWER unless `answers` maps a marker (found in the evolved instruction) to a text
    equal: "Not Equal" unless a marker of `equal` is in the second prompt
    score: `scores` maps a marker in the response to a score (default 7)
    """

    def __init__(self, rewrite=None, answers=None, equal=(), scores=None, fail_rounds=None):
        self.rewrite = rewrite or {}
        self.answers = answers or {}
        self.equal = tuple(equal)
        self.scores = scores or {}

    def __call__(self, kind: str, body: dict) -> str:
        text = last_user(body)
        k = kind_of(body)
        if k == "evolve":
            old = given(text)
            for marker, new in self.rewrite.items():
                if marker in old:
                    return new(old) if callable(new) else new
            return f"{old} Step {_h(old + str(body.get('seed')))}."
        if k == "equal":
            second = text.split("Second prompt:\n", 1)[1]
            return "Equal" if any(m in second for m in self.equal) else "Not Equal"
        if k == "score":
            response = text.split("Response:\n", 1)[1]
            score = next((s for m, s in self.scores.items() if m in response), 7)
            return json.dumps({"score": score, "rationale": f"scored {score}"})
        if k == "followup":
            turns = text.count("Assistant:")
            return f"Could you give an example of point {turns}?"
        for marker, answer in self.answers.items():
            if marker in text:
                return answer(body) if callable(answer) else answer
        return GOOD_ANSWER + f" ({_h(text + str(body.get('seed')))})"
