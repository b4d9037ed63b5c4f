"""Benchmark: RougeNovelty against the Alpaca-style quadratic ROUGE-L loop.

    python bench/rouge_novelty.py [--quick] [--n N] [--baseline-n M]

Generates N instruction-like texts deterministically (templates over a Zipf-distributed vocabulary, plus
~20% edited copies of earlier ones so that there are rejections near and above the threshold), streams
them through ``RougeNovelty.check_and_add`` and through the baseline — stanford_alpaca's loop: rouge-score
tokenizer once per instruction, ``rouge_scorer._score_lcs(new, old)`` against every pooled instruction one
pair at a time, ``np.argsort`` for the 10 most similar, ``np.mean`` — in one process (Alpaca spreads each
candidate's pairs over a process pool; that divides wall time by the core count, not the pair count).
The baseline runs on the first M instructions only (default 2000, --quick 500); its time is extrapolated
to N assuming quadratic growth: ``t * (N / M) ** 2``. Decisions, rouge_max and the top-10 scores on those
M must be identical (and the mean similarity too while ours is exact, i.e. the pool is <= MEAN_SAMPLE).
Times are wall clock (``*_s``) and CPU of this process (``*_cpu_s``: the honest figure when other jobs
share the machine). The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import bisect
import json
import random
import sys
import time
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datagen.filters.rouge_novelty import RougeNovelty  # noqa: E402

VERBS = """write generate create explain describe summarize list classify identify suggest compare
rewrite translate find give design outline analyze propose draft compose evaluate recommend convert
predict estimate brainstorm plan edit correct sort rank extract detect calculate solve""".split()
ADJS = """short simple detailed funny formal informal creative persuasive positive negative important
healthy common useful popular modern ancient complex practical friendly professional polite
environmental economic historical scientific personal social cultural political technical main
different similar best worst new old quick slow effective efficient safe cheap expensive""".split()
FORMS = """story poem essay email letter tweet headline slogan summary review report speech dialogue
paragraph sentence list recipe description plan proposal advertisement joke riddle question answer
outline title article blog post message note song lyrics announcement""".split()
PEOPLE = """student teacher child beginner manager customer friend doctor engineer parent tourist
scientist programmer writer chef athlete investor farmer nurse lawyer""".split()
LANGS = "French Spanish German Chinese Japanese Italian Portuguese Russian Korean Arabic".split()
NOUNS = """time person year way day thing man world life hand part child eye woman place work week case
point government company number group problem fact water city book money story food music movie game
computer phone car house school student family friend health energy climate weather ocean forest river
mountain animal dog cat bird tree plant flower garden country history science art language math
sentence word text article product service customer price market business team project plan idea
question answer list table data information report result method system process program code function
algorithm network website email message letter meeting event party holiday trip travel hotel
restaurant recipe meal breakfast dinner coffee tea fruit vegetable exercise sport sleep habit goal
skill job career interview resume salary budget tax law rule policy election vote right freedom
technology internet software app device robot machine vehicle battery solar wind pollution
recycling waste plastic disease medicine doctor hospital vaccine brain heart memory emotion stress
happiness friendship relationship conversation debate argument opinion review rating feedback
""".split()

OPENERS = """Write|Please write|Can you write|I need you to write|Help me write|Generate|Come up with|Create|Draft
|Compose|Explain|Describe|Tell me about|List|Give me|Suggest|Make|Summarize|Classify|Identify|Find|Rewrite
|Translate|Compare|Analyze|Design|Propose|Evaluate|Outline|Brainstorm|Recommend|Plan|Prepare|Invent
|Imagine|Predict|Rank|Sort|Detect|Extract|Convert|Edit|Correct|Review|Critique|Estimate""".replace("\n", "").split("|")
CONNECTORS = ["about", "on", "for", "that explains", "describing", "related to", "comparing", "in which",
              "inspired by", "focused on", "against", "with", "without mentioning", "based on", "that uses",
              "regarding", "to celebrate", "to promote", "to criticize", "to introduce"]
PURPOSES = ["for a {P}", "so that a {P} can understand {T2}", "to help {P}s with {T2}", "for {P}s in {L} class",
            "that a {P} would enjoy", "for a {A2} audience", "as if you were a {P}", "in the style of a {P}",
            "for a {N2} company", "suitable for {P}s who like {T2}"]
QUESTIONS = ["What is the {A} way to {V} {T}?", "How does {T} affect {T2}?", "Why do {P}s care about {T}?",
             "Which {N} is more {A}: {T} or {T2}?", "How can a {P} {V} {T} {C} {T2}?",
             "What would happen if {T} replaced {T2}?", "When should a {P} {V} {T}?",
             "Is {T} {A} {C} {T2}?", "Who invented {T}, and why?", "What are {K} {A} facts about {T}?"]
CONTEXTS = ["", "", "", " The {F} should mention {T2} and {N2}.", " Assume the reader knows nothing about {T2}.",
            " Focus on {T2} rather than {N2}.", " Mention at least one {A2} {N2}.",
            " The audience is a {P} working on {T2}.", " Start with {T2} and end with {N2}.",
            " Avoid the word {N2}.", " Use {T2} as an example.", " The input is a {F} about {T2}."]
TAILS = ["", "", "", " Use simple language.", " Keep it under {K} words.", " Be specific.",
         " Include at least one example.", " Answer in {L}.", " Explain your reasoning step by step."]


def _pseudo_words(rng: random.Random, n: int) -> list[str]:
    """A long tail of made-up terms (names, jargon) so the vocabulary is Zipf-like, not a few hundred words."""
    syll = "ka lo mi ne ru sa ti vo ba de fi gu ha jo ke li mo nu pa qi re so tu vi wa xe yo zu an el or".split()
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def synthetic_instructions(n: int, seed: int = 0) -> list[str]:
    """n instruction-like texts, deterministic for (n, seed); ~20% are edited copies of earlier ones."""
    rng = random.Random(seed)
    vocab = NOUNS + _pseudo_words(rng, 20000)
    cum = list(accumulate(1.0 / (r + 1) ** 1.05 for r in range(len(vocab))))

    def noun() -> str:
        return vocab[bisect.bisect(cum, rng.random() * cum[-1])]

    def topic() -> str:
        c = rng.random()
        if c < 0.35:
            return noun()
        if c < 0.6:
            return f"{rng.choice(ADJS)} {noun()}"
        if c < 0.75:
            return f"the {noun()} of {noun()}"
        if c < 0.9:
            return f"{noun()} and {noun()}"
        return f"{noun()} {noun()} in {noun()}"

    def obj() -> str:
        c = rng.random()
        if c < 0.4:
            return f"a {rng.choice(ADJS)} {rng.choice(FORMS)}"
        if c < 0.6:
            return f"{rng.choice([2, 3, 5, 10])} {rng.choice(ADJS)} {noun()}s"
        if c < 0.8:
            return f"the {noun()} of {topic()}"
        return f"an example of {topic()}"

    def fresh() -> str:
        slots = {
            "V": rng.choice(VERBS), "A": rng.choice(ADJS), "A2": rng.choice(ADJS), "F": rng.choice(FORMS),
            "T": topic(), "T2": topic(), "N": noun(), "N2": noun(), "C": rng.choice(CONNECTORS),
            "K": str(rng.choice([2, 3, 3, 5, 5, 10, 50, 100])), "P": rng.choice(PEOPLE), "L": rng.choice(LANGS),
        }
        if rng.random() < 0.25:
            head = rng.choice(QUESTIONS)
        else:
            head = f"{rng.choice(OPENERS)} {obj()} {{C}} {{T}}"
            if rng.random() < 0.5:
                head += " " + rng.choice(PURPOSES)
            head += "."
        return (head + rng.choice(CONTEXTS) + rng.choice(TAILS)).format(**slots)

    def edited(text: str) -> str:
        words = text.split()
        for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10])):
            op = rng.random()
            i = rng.randrange(len(words))
            if op < 0.35:
                words[i] = noun() if rng.random() < 0.5 else rng.choice(ADJS)
            elif op < 0.55 and len(words) > 4:
                del words[i]
            elif op < 0.8:
                words.insert(i, rng.choice(ADJS + ["very", "the", "a", "some", "new", "please"]))
            elif i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        out = " ".join(words)
        return out.upper() if rng.random() < 0.02 else out

    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.2:
            texts.append(edited(texts[rng.randrange(max(0, len(texts) - 3000), len(texts))]))
        else:
            texts.append(fresh())
    return texts


def alpaca_baseline(texts: list[str], threshold: float = 0.7) -> list[tuple[bool, float, list[float], float]]:
    """stanford_alpaca's novelty loop, single process: (kept, rouge_max, top-10 scores, mean) per text."""
    import numpy as np
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool_tokens: list[list[str]] = []
    out = []
    for text in texts:
        new_tokens = scorer._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(new_tokens, old).fmeasure for old in pool_tokens]
        top = [scores[i] for i in np.argsort(scores)[-10:][::-1]]
        avg = float(np.mean(scores)) if scores else 0.0
        rouge_max = max(scores, default=0.0)
        kept = not rouge_max > threshold
        if kept:
            pool_tokens.append(new_tokens)
        out.append((kept, rouge_max, top, avg))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=5000, baseline on the first 500")
    ap.add_argument("--n", type=int, default=None, help="instructions to generate (default 52000)")
    ap.add_argument("--baseline-n", type=int, default=None, help="baseline prefix (default 2000)")
    args = ap.parse_args()
    n = args.n or (5000 if args.quick else 52000)
    bn = min(n, args.baseline_n or (500 if args.quick else 2000))

    t0 = time.perf_counter()
    texts = synthetic_instructions(n)
    gen_s = time.perf_counter() - t0

    index = RougeNovelty()
    ours = []
    t0, c0 = time.perf_counter(), time.process_time()
    for text in texts:
        ours.append(index.check_and_add(text))
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    rejected = sum(not v.keep for v in ours)

    t0, c0 = time.perf_counter(), time.process_time()
    base = alpaca_baseline(texts[:bn])
    base_s, base_cpu = time.perf_counter() - t0, time.process_time() - c0
    extrapolated = base_s * (n / bn) ** 2

    identical = True
    for v, (kept, rmax, top, avg) in zip(ours, base):
        if v.keep != kept or v.detail["rouge_max"] != rmax:
            identical = False
        elif kept and [s for _, s in v.detail["most_similar"]] != [s for s in top if s > 0]:
            identical = False
        elif kept and v.detail["avg_similarity_n"] == v.detail["pool_size"]:  # exact mean: must agree
            identical &= abs(v.detail["avg_similarity"] - avg) <= 1e-12
    base_rejected = sum(not b[0] for b in base)

    rows = [
        ("RougeNovelty (ours)", n, ours_s, ours_cpu, rejected),
        ("RougeNovelty (ours), first M", bn, None, None, sum(not v.keep for v in ours[:bn])),
        ("Alpaca loop (rouge-score)", bn, base_s, base_cpu, base_rejected),
        ("Alpaca loop, extrapolated", n, extrapolated, base_cpu * (n / bn) ** 2, None),
    ]
    print(f"generated {n} instructions in {gen_s:.1f}s; pool size at end {len(index)}")
    print(f"{'method':32} {'n':>7} {'wall s':>12} {'cpu s':>12} {'rejected':>9}")
    for name, cnt, secs, cpu, rej in rows:
        w = f"{secs:12.1f}" if secs is not None else f"{'':12}"
        c = f"{cpu:12.1f}" if cpu is not None else f"{'':12}"
        r = f"{rej:9d}" if rej is not None else f"{'':9}"
        print(f"{name:32} {cnt:7d} {w} {c} {r}")
    print(f"baseline extrapolated as {base_s:.1f}s * ({n}/{bn})^2 (quadratic in N)")
    print(f"speedup (extrapolated): {extrapolated / ours_s:,.0f}x; identical on first {bn}: {identical}")
    print(json.dumps({
        "bench": "rouge_novelty", "n": n, "ours_s": round(ours_s, 2), "ours_cpu_s": round(ours_cpu, 2),
        "baseline_n": bn, "baseline_s": round(base_s, 2), "baseline_cpu_s": round(base_cpu, 2),
        "baseline_s_extrapolated": round(extrapolated),
        "speedup_extrapolated": round(extrapolated / ours_s), "identical": identical, "rejected": rejected,
    }))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
