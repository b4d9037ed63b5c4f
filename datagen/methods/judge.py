"""The LLM judge: a 1–10 score with a one-sentence rationale (structured output), Evol-Instruct's
Equal / Not Equal check, and the cheap signals that decide which records are worth judging.

Every judge call costs money, so by default only hard cases are judged: a record is sent when one of
the signals below flags it (`--judge all` sends everything, `--judge off` nothing). The signals are
computed from what the record already carries — no call is made to find them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from datagen.methods.templates import Template, load_template
from datagen.records import Record
from datagen.teacher.client import InvalidStructuredOutput

JUDGE_MODES = ("hard", "all", "off")
SCORE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10},
                   "rationale": {"type": "string"}},
    "required": ["score", "rationale"],
}
SCORE_PARAMS = {"temperature": 0.0, "max_tokens": 160}
EQUAL_PARAMS = {"temperature": 0.0, "max_tokens": 6}

# Hard-case signals: name -> what it means (written to the manifest).
SIGNALS = {
    "short_answer": "the answer has fewer than 8 words",
    "hedging": "the answer apologises or refuses (sorry, as an AI, I cannot, ...)",
    "rouge_near_threshold": "ROUGE-L novelty within 0.1 under the threshold",
    "length_near_bound": "the instruction is within 2 words of a length filter's bound",
    "single_label": "a classification task whose instances all carry one label",
    "evol_boundary": "an evolution that passed an elimination rule narrowly (a 'sorry' answer of 80-100 "
                     "words, or an answer that is mostly stop words)",
    "truncated": "the answer was cut by max_tokens",
}
_HEDGES = re.compile(r"\b(sorry|apologi[sz]e|as an ai\b|i cannot|i can't|i am unable|i'm unable|i am not able|"
                     r"i'm not able|cannot assist|can't help)", re.I)


@dataclass(frozen=True)
class JudgeParams:
    mode: str = "hard"           # hard | all | off
    min_score: int = 5           # records judged below this are rejected
    rouge_threshold: float = 0.7

    def __post_init__(self) -> None:
        if self.mode not in JUDGE_MODES:
            raise ValueError(f"mode: expected one of {', '.join(JUDGE_MODES)}, got {self.mode!r}")
        if isinstance(self.min_score, bool) or not isinstance(self.min_score, int) or not 1 <= self.min_score <= 10:
            raise ValueError(f"min_score: must be a whole number between 1 and 10, got {self.min_score!r}")


@dataclass(frozen=True)
class JudgeTemplates:
    score: Template
    equal: Template

    @classmethod
    def load(cls, prompts_dir: str | None = None) -> "JudgeTemplates":
        return cls(score=load_template("judge", "score", prompts_dir, {"instruction", "response"}),
                   equal=load_template("evol", "equal", prompts_dir, {"first", "second"}))

    def hashes(self) -> dict[str, str]:
        return {t.name: t.sha256 for t in (self.score, self.equal)}


def words(text: str) -> list[str]:
    return text.split()


def signals(record: Record, rouge_threshold: float = 0.7) -> list[str]:
    """The hard-case signals that flag `record` (empty: an easy case, not worth a judge call)."""
    out = []
    answer = record.output
    n = len(words(answer))
    if n < 8:
        out.append("short_answer")
    if _HEDGES.search(answer):
        out.append("hedging")
    rouge = record.scores.get("rouge_max")
    if isinstance(rouge, (int, float)) and rouge_threshold - 0.1 <= rouge <= rouge_threshold:
        out.append("rouge_near_threshold")
    m = len(words(record.instruction))
    if record.method == "self_instruct" and (m <= 5 or m >= 148):
        out.append("length_near_bound")
    if record.meta.get("single_label"):
        out.append("single_label")
    if record.meta.get("evol_boundary"):
        out.append("evol_boundary")
    if record.meta.get("finish_reason") == "length":
        out.append("truncated")
    return out


def flag_single_label(records: list[Record]) -> None:
    """Self-Instruct classification tasks whose instances all have one output label."""
    by_task: dict[str, set[str]] = {}
    for r in records:
        if r.meta.get("is_classification"):
            by_task.setdefault(str(r.meta.get("task_id")), set()).add(r.output.strip().lower())
    for r in records:
        if r.meta.get("is_classification") and len(by_task.get(str(r.meta.get("task_id")), ())) == 1:
            r.meta["single_label"] = True


def render_response(record: Record) -> tuple[str, str]:
    """(instruction, response) as the judge reads them; a conversation is a transcript."""
    instruction = record.instruction + (f"\n\nInput:\n{record.input}" if record.input else "")
    if record.conversation:
        turns = [f"{'User' if t['role'] == 'user' else 'Assistant'}: {t['content']}" for t in record.conversation]
        return instruction, "\n\n".join(turns)
    return instruction, record.output


async def score(judge: Any, templates: JudgeTemplates, instruction: str, response: str,
                seed: int = 0) -> tuple[int | None, str]:
    """(score 1-10, rationale); (None, why) when the judge gave no valid structured answer."""
    prompt = templates.score.render(instruction=instruction, response=response)
    try:
        value, _ = await judge.complete_json(prompt, SCORE_SCHEMA, {**SCORE_PARAMS, "seed": seed}, kind="judge_score",
                                             sample=0)
    except InvalidStructuredOutput as e:
        return None, f"no valid judge answer ({e.reason})"
    rationale = " ".join(str(value.get("rationale", "")).split())
    return int(value["score"]), rationale


def parse_equal(text: str) -> bool | None:
    """True: Equal; False: Not Equal; None: neither (counted, and treated as Not Equal)."""
    t = " ".join(text.lower().replace("*", "").split())
    if "not equal" in t:
        return False
    if t.startswith("equal") or " equal" in f" {t}":
        return True
    return None


async def equal(judge: Any, templates: JudgeTemplates, first: str, second: str, seed: int = 0) -> tuple[bool | None, str]:
    """Evol-Instruct's rule 1: are the old and the evolved instruction equal (no information gain)?"""
    prompt = templates.equal.render(first=first, second=second)
    answer = await judge.complete(prompt, {**EQUAL_PARAMS, "seed": seed}, kind="judge_equal", api="chat", sample=0)
    return parse_equal(answer.text), answer.key


async def judge_records(records: list[Record], judge: Any, templates: JudgeTemplates, params: JudgeParams,
                        seed: int = 42) -> tuple[list[Record], list[dict[str, Any]], dict[str, Any]]:
    """Score the records the mode selects (all, or those a signal flags); keep the unjudged and those
    scoring at least min_score. Returns (kept, rejected rows, counts for the manifest)."""
    import asyncio

    from datagen.methods.evol import derived_seed

    flag_single_label(records)
    flagged = {r.id: ([] if params.mode == "all" else signals(r, params.rouge_threshold)) for r in records}
    chosen = [r for r in records if params.mode == "all" or (params.mode == "hard" and flagged[r.id])]
    # A record the judge already scored (best-of-K) is decided on that score: no second call.
    scored = {r.id: (r.scores["judge"]["score"], r.scores["judge"].get("rationale", "")) for r in chosen
              if isinstance(r.scores.get("judge"), dict) and isinstance(r.scores["judge"].get("score"), int)}
    ask = [r for r in chosen if r.id not in scored]
    results = await asyncio.gather(*(score(judge, templates, *render_response(r), seed=derived_seed(seed, r.id, "judge"))
                                     for r in ask))
    verdicts = {**scored, **{r.id: res for r, res in zip(ask, results)}}
    kept, rejected = [], []
    counts: dict[str, Any] = {"records": len(records), "judged": len(chosen), "judge_calls": len(ask),
                              "kept": 0, "below_min_score": 0,
                              "no_valid_answer": 0, "signals": {}}
    for r in records:
        for s in flagged[r.id]:
            counts["signals"][s] = counts["signals"].get(s, 0) + 1
        if r.id not in verdicts:
            kept.append(r)
            continue
        value, rationale = verdicts[r.id]
        r.scores["judge"] = {**(r.scores.get("judge") or {}), "score": value, "rationale": rationale,
                             "signals": flagged[r.id], "min_score": params.min_score}
        if value is None:
            counts["no_valid_answer"] += 1     # kept: a judge that could not answer is no verdict on the record
            kept.append(r)
        elif value < params.min_score:
            counts["below_min_score"] += 1
            rejected.append({"id": r.id, "stage": "judge", "reason": "judge_below_min_score",
                             "detail": {"score": value, "rationale": rationale, "min_score": params.min_score,
                                        "signals": flagged[r.id]},
                             "text": r.instruction, "record": r.to_dict()})
        else:
            kept.append(r)
    counts["kept"] = len(kept)
    counts["signal_meanings"] = {k: SIGNALS[k] for k in counts["signals"]}
    return kept, rejected, counts
