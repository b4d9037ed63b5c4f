"""A scripted responder that answers Self-Instruct's four prompt kinds in the expected *shape*.

For protocol tests (faults, crashes, secrets) only: it lets a whole run go through a stub endpoint
deterministically. It is no evidence that generation works; the e2e tests on the embedded llama.cpp
teacher are.
"""
from __future__ import annotations

import hashlib
import random

VERBS = ["Describe", "Explain", "Summarize", "Compare", "List", "Suggest", "Outline", "Classify", "Rewrite", "Estimate"]
NOUNS = ["glaciers", "bread yeast", "tax brackets", "solar sails", "chess endgames", "river deltas", "vaccines",
         "bike gears", "jazz chords", "ant colonies", "sourdough", "tidal power", "compilers", "coral reefs",
         "credit scores", "monsoons", "origami cranes", "hash maps", "beekeeping", "lunar phases"]
ANGLES = ["for a curious child", "in three short bullet points", "with one concrete example", "for a busy manager",
          "using a simple analogy", "and name one common mistake", "as a short checklist", "in under sixty words"]


def _rng(prompt: str) -> random.Random:
    return random.Random(hashlib.sha256(prompt.encode()).digest())


def responder(kind: str, body: dict) -> str:
    prompt = body.get("prompt") or body["messages"][-1]["content"]
    rng = _rng(prompt)
    if prompt.rstrip().endswith("Is it classification?"):
        return " Yes" if rng.random() < 0.3 else " No"
    if prompt.rstrip().endswith("9."):
        items = [f"{rng.choice(VERBS)} {rng.choice(NOUNS)} {rng.choice(ANGLES)} while covering point {rng.randint(1, 10**6)}."
                 for _ in range(rng.randint(1, 4))]
        return " " + "\n".join(f"{i}. {t}" if i > 9 else t for i, t in enumerate(items, 9))
    if "Class label:" in prompt:
        return "\n".join(f"Class label: {lab}\nText: sample {rng.randint(1, 10**6)} for {lab}" for lab in ("Alpha", "Beta"))
    n = rng.randint(1, 3)
    return "\n".join(f"Example {k}\nInput: case {rng.randint(1, 10**6)}\nOutput: result {rng.randint(1, 10**6)}."
                     for k in range(1, n + 1))
