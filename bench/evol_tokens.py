"""Evol-Instruct tokens per kept record: elimination order "cheap_first" vs "naive", same run, same stub.

Run from the repository root:  .venv/bin/python bench/evol_tokens.py [--items 200] [--rounds 4]

A scripted OpenAI-compatible stub (tests/openai_stub.py, in this process, latency 0: this bench counts
tokens, not time) answers the three request kinds of datagen/methods/evol.py with FIXED failure rates
per elimination rule, each decided by a hash of the request's content (never by arrival order or by
which order asked), so both orders see the very same answers to the very same requests:

  evolve  (prompt contains "#Given Prompt#:" and ends in "#Rewritten Prompt#:" / "#Created Prompt#:")
          15 %  rule 4: the rewrite copies "#Rewritten Prompt#" (or "#Created Prompt#")
          else  the old instruction + " Also consider <hash word> <n>." (new and unique)
  answer  (chat, messages=[user: evolved])
          10 %  rule 2: "Sorry, I can't help with that."
           5 %  rule 3: "the of and, to a."
          else  a plausible answer of ~120 words
  equal   (prompts/evol/equal.txt rendered)
          10 %  rule 1: "Equal"
          else  "Not Equal"

The stub counts tokens as whitespace words (+4 per chat message); the Teacher reports them in
`usage`. Both orders run the same ~200 inputs for 4 rounds on their own Teacher (cache off) and must
keep identical records (instruction, output, op, round, parents); the bench exits 1 if they do not.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from openai_stub import StubConfig, StubServer  # noqa: E402

from datagen.methods.evol import EvolParams, EvolState, EvolTemplates  # noqa: E402
from datagen.methods.judge import JudgeTemplates  # noqa: E402
from datagen.records import Record  # noqa: E402
from datagen.teacher.client import Teacher  # noqa: E402
from datagen.teacher.config import TeacherConfig  # noqa: E402

MODEL = "stub"
RATE_RULE4 = 0.15   # evolve: the rewrite copies the prompt's marker
RATE_RULE2 = 0.10   # answer: short "sorry"
RATE_RULE3 = 0.05   # answer: only stop words and punctuation
RATE_RULE1 = 0.10   # judge: Equal (no information gain)

GIVEN = "#Given Prompt#:"
SORRY = "Sorry, I can't help with that."
STOPWORDS_ONLY = "the of and, to a."

HASH_WORDS = ("latency", "budgets", "edge cases", "seasonality", "accessibility", "provenance", "trade-offs",
              "failure modes", "regional law", "scaling", "maintenance", "ethics", "measurement error",
              "user feedback", "energy use", "historical context", "cost", "safety margins", "privacy",
              "long-term effects", "small samples", "cultural norms", "interoperability", "audit trails")

ANSWER_SENTENCES = (
    "Start by stating the goal in one plain sentence, so the reader knows what a good result looks like.",
    "Next, list the facts you already have and mark the ones that still need checking.",
    "A concrete example helps: imagine a small team planning a weekend market stall with a tight budget.",
    "Break the work into three steps, and give each step a clear owner and a realistic deadline.",
    "Consider the main constraint first, because it usually decides which options remain practical.",
    "Compare at least two approaches side by side, noting their costs, benefits and obvious risks.",
    "Where numbers matter, show the calculation rather than only the final figure.",
    "Mention one common mistake beginners make and explain briefly how to avoid it.",
    "If the situation changes, revisit the earlier assumptions before adding new requirements.",
    "Keep the language simple, define technical terms once, and prefer short paragraphs.",
    "Finally, summarise the recommendation and describe how someone could verify it independently.",
    "Record what was learned, since later projects often face surprisingly similar questions.",
    "Ask a colleague to review the draft, because fresh eyes catch unclear wording quickly.",
    "Budget some extra time for testing, as small problems tend to appear near the end.",
)

SUBJECTS = ("a community garden", "a bakery's weekly schedule", "a beginner's running plan", "a school science fair",
            "a small library's catalogue", "a family travel budget", "a bicycle repair workshop", "a city bus route",
            "a volunteer fire brigade", "an online book club", "a rooftop solar installation", "a local museum tour",
            "a kitchen renovation", "a chess tutoring session", "a neighbourhood recycling drive",
            "a rainwater tank", "a student's exam revision", "a farmers' cooperative", "a hiking club newsletter",
            "a pet adoption fair")
TASKS = ("Write a short plan for {s}.", "Explain the main risks of {s}.", "Describe how to improve {s}.",
         "List five questions to ask before starting {s}.", "Summarise the costs involved in {s}.",
         "Draft a friendly announcement about {s}.", "Suggest a way to measure the success of {s}.",
         "Compare two ways of organising {s}.", "Give advice to a newcomer running {s}.",
         "Outline a timeline for {s}.")
INPUTS = ("Budget: 500 euros; helpers: 3; time: two months.", "Audience: retired volunteers.",
          "Constraint: no internet access on site.", "Previous attempt failed because of poor weather.")


# --------------------------------------------------------------------------- the scripted responder

def _unit(*parts: str) -> float:
    """A uniform [0, 1) number that is a pure function of the text (the same in every process)."""
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def _pick(seq: tuple, *parts: str):
    return seq[int(_unit("pick", *parts) * len(seq))]


def _answer(text: str) -> str:
    """~120 words of plausible prose, chosen by the instruction's hash (no 'sorry', many content words)."""
    h = hashlib.sha256(text.encode()).digest()
    order = sorted(range(len(ANSWER_SENTENCES)), key=lambda i: (h[i % len(h)] * 31 + i) % 257)
    words, out = 0, []
    for i in order:
        out.append(ANSWER_SENTENCES[i])
        words += len(ANSWER_SENTENCES[i].split())
        if words >= 120:
            break
    return " ".join(out)


def responder(kind: str, body: dict) -> str:
    if kind != "chat":
        raise ValueError(f"evol sends chat requests only, got {kind}")
    content = body["messages"][-1]["content"]
    tail = content.rstrip()
    if GIVEN in content and (tail.endswith("#Rewritten Prompt#:") or tail.endswith("#Created Prompt#:")):
        old = tail.rsplit(GIVEN, 1)[1].rsplit("\n", 1)[0].strip()
        marker = "#Created Prompt#" if tail.endswith("#Created Prompt#:") else "#Rewritten Prompt#"
        if _unit("rule4", content) < RATE_RULE4:
            return f"{marker}: {old} Make it harder."
        n = int(_unit("n", content) * 10**6)
        return f"{old} Also consider {_pick(HASH_WORDS, 'word', content)} {n}."
    if content.startswith("Compare the two prompts below") and "First prompt:" in content:
        return "Equal" if _unit("rule1", content) < RATE_RULE1 else "Not Equal"
    u = _unit("rule23", content)
    if u < RATE_RULE2:
        return SORRY
    if u < RATE_RULE2 + RATE_RULE3:
        return STOPWORDS_ONLY
    return _answer(content)


# --------------------------------------------------------------------------- the run

def inputs(n: int) -> list[Record]:
    out = []
    for i in range(n):
        s, t = SUBJECTS[i % len(SUBJECTS)], TASKS[(i // len(SUBJECTS)) % len(TASKS)]
        text = t.format(s=s)
        if i >= len(SUBJECTS) * len(TASKS):
            text += f" (variant {i})"
        inp = INPUTS[i % len(INPUTS)] if i % 5 == 0 else ""
        out.append(Record(instruction=text, input=inp, method="seed"))
    assert len({r.id for r in out}) == n, "inputs must be distinct"
    return out


async def run_order(order: str, base_url: str, records: list[Record], rounds: int, seed: int) -> dict:
    params = EvolParams(order=order, rounds=rounds, seed=seed)
    state = EvolState(records, params, EvolTemplates.load(), JudgeTemplates.load())
    async with Teacher(TeacherConfig(base_url=base_url, model=MODEL, max_concurrency=64), cache=None) as teacher:
        judge = teacher.as_role("judge")
        t0 = time.perf_counter()
        while not state.finished():
            await state.evolve_round(teacher, judge)
        wall = time.perf_counter() - t0
        tu, ju = teacher.usage, judge.usage
    t_tok, j_tok = tu.prompt_tokens + tu.completion_tokens, ju.prompt_tokens + ju.completion_tokens
    kept = len(state.survivors)
    return {
        "order": order, "teacher_requests": tu.requests, "judge_requests": ju.requests,
        "teacher_tokens": t_tok, "judge_tokens": j_tok, "total_tokens": t_tok + j_tok, "kept": kept,
        "tokens_per_kept": (t_tok + j_tok) / kept if kept else float("inf"),
        "by_kind": {k: dict(v) for role in (tu, ju) for k, v in role.by_kind.items()},
        "eliminations": state.pass_rates()["eliminations"], "wall_s": wall,
        "records": [(r.instruction, r.output, r.op, r.round, list(r.parents)) for r in state.survivors],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    records = inputs(args.items)

    with StubServer(StubConfig(latency_s=0.0, responder=responder)) as srv:
        results = [asyncio.run(run_order(order, srv.base_url, records, args.rounds, args.seed))
                   for order in ("cheap_first", "naive")]
        stub_stats = srv.stats
    cheap, naive = results

    print(f"Evol-Instruct tokens: {args.items} inputs, {args.rounds} rounds, seed {args.seed}; stub failure rates "
          f"rule4 {RATE_RULE4:.0%}, rule2 {RATE_RULE2:.0%}, rule3 {RATE_RULE3:.0%}, rule1 {RATE_RULE1:.0%}")
    cols = [("teacher requests", "teacher_requests", "d"), ("judge requests", "judge_requests", "d"),
            ("teacher tokens", "teacher_tokens", "d"), ("judge tokens", "judge_tokens", "d"),
            ("total tokens", "total_tokens", "d"), ("kept records", "kept", "d"),
            ("tokens / kept record", "tokens_per_kept", ".1f")]
    print(f"{'':22s}{'cheap_first':>14s}{'naive':>14s}")
    for label, key, fmt in cols:
        print(f"{label:22s}{format(cheap[key], fmt):>14s}{format(naive[key], fmt):>14s}")
    print("requests by kind (cheap_first / naive): " + ", ".join(
        f"{k} {cheap['by_kind'].get(k, {}).get('requests', 0)}/{naive['by_kind'].get(k, {}).get('requests', 0)}"
        for k in ("evolve", "evol_answer", "judge_equal")))
    print("eliminations (cheap_first / naive): " + ", ".join(
        f"{k} {cheap['eliminations'][k]}/{naive['eliminations'][k]}" for k in cheap["eliminations"]))
    ratio = naive["tokens_per_kept"] / cheap["tokens_per_kept"]
    print(f"ratio naive / cheap_first, tokens per kept record: {ratio:.3f} "
          f"({100 * (1 - 1 / ratio):.1f}% of naive's tokens saved)")
    served = stub_stats["prompt_tokens"] + stub_stats["completion_tokens"]
    print(f"stub counted {served} tokens in all (client total {cheap['total_tokens'] + naive['total_tokens']}); "
          f"wall {cheap['wall_s']:.2f} s / {naive['wall_s']:.2f} s")
    identical = cheap["records"] == naive["records"]
    print(f"kept records identical (instruction, output, op, round, parents): {'yes' if identical else 'NO'}")
    if not identical:
        a, b = cheap["records"], naive["records"]
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"  first difference at index {first} (cheap_first {len(a)} records, naive {len(b)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
