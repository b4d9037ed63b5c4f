"""The Alpaca variant of Self-Instruct (tatsu-lab/stanford_alpaca, generate_instruction.py), DESIGN §5.

Instead of a numbered list of bare instructions, each prompt shows 3 seed tasks whole (instruction,
input, output) and asks for 20; the teacher writes instruction, input and output together, so there is
no classification or instance step. Items are split on `###`, each must have the three numbered fields,
and the instruction passes Self-Instruct's rules with Alpaca's 18-word blacklist and the same ROUGE-L
novelty rule. Plain async Python over a Teacher: no Prefect, no network code.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.filters.instruction import ALPACA_BLACKLIST, InstructionRules
from datagen.methods.common import BootstrapState, rouge_scores
from datagen.methods.templates import Template, load_template
from datagen.records import Record
from datagen.store.seeds import SeedTask
from datagen.teacher.client import Teacher

# generate_instruction.py: a non-numbered item split (`###`), then `k. Instruction:/Input:/Output:`.
_FIELDS = re.compile(r"\d+\s?\.\s?(Instruction|Input|Output):")
NOINPUT = "<noinput>"
KIND = "alpaca"


@dataclass
class AlpacaParams:
    num_instructions: int = 10          # target: accepted instruction/input/output triples
    seeds_per_prompt: int = 3           # seed tasks shown whole in each prompt
    instructions_per_call: int = 20     # the list length the prompt asks for; the stop sequences end it
    prompts_per_round: int = 5          # Alpaca's request_batch_size (at most, per round)
    max_stalled_rounds: int = 5         # stop when this many rounds in a row accept nothing new
    rouge_threshold: float = 0.7
    rouge_tokenizer: str = "rouge_score"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens_per_call: int = 3072
    max_tokens: int | None = None       # caps every request's max_tokens (small models, tests)
    seed: int = 42
    prompts_dir: str | None = None

    def __post_init__(self) -> None:
        for name, low, high in PARAM_RANGES:
            value = getattr(self, name)
            if value is None and name == "max_tokens":
                continue
            is_float = name in _FLOAT_FIELDS
            if isinstance(value, bool) or not isinstance(value, (int, float) if is_float else int):
                raise ValueError(f"{name}: expected {'a number' if is_float else 'a whole number'}, got {value!r}")
            if not low <= value <= high:
                span = f"at least {low}" if high == math.inf else f"between {low} and {high}"
                raise ValueError(f"{name}: must be {span}, got {value}")
        if self.instructions_per_call < self.seeds_per_prompt + 2:
            raise ValueError(f"instructions_per_call: must be at least seeds_per_prompt + 2 "
                             f"({self.seeds_per_prompt + 2}) so the list leaves room for a new task, "
                             f"got {self.instructions_per_call}")
        if self.rouge_tokenizer not in ("rouge_score", "unicode"):
            raise ValueError(f"rouge_tokenizer: expected rouge_score or unicode, got {self.rouge_tokenizer!r}")
        if self.prompts_dir is not None and not isinstance(self.prompts_dir, str):
            raise ValueError(f"prompts_dir: expected a folder path, got {self.prompts_dir!r}")

    def sampling(self) -> dict[str, Any]:
        """generate_instruction.py's decoding arguments (its GPT-3-only logit_bias is left out)."""
        n = self.instructions_per_call
        max_tokens = self.max_tokens_per_call
        if self.max_tokens is not None:
            max_tokens = min(max_tokens, self.max_tokens)
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": max_tokens,
                "stop": [f"\n{n}", f"{n}.", f"{n}."]}


# (setting, lowest, highest) meaningful values; checked before anything starts.
PARAM_RANGES = (("num_instructions", 1, math.inf), ("seeds_per_prompt", 1, 64),
                ("instructions_per_call", 2, 1000), ("prompts_per_round", 1, 100_000),
                ("max_stalled_rounds", 1, 1_000_000), ("rouge_threshold", 0.0, 1.0),
                ("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0), ("max_tokens_per_call", 1, 1_000_000),
                ("max_tokens", 1, 1_000_000), ("seed", -2**63, 2**63 - 1))
_FLOAT_FIELDS = ("rouge_threshold", "temperature", "top_p")


@dataclass
class AlpacaTemplates:
    prompt: Template

    @classmethod
    def load(cls, prompts_dir: str | Path | None = None) -> "AlpacaTemplates":
        return cls(prompt=load_template("alpaca", "prompt", prompts_dir, set()))

    def hashes(self) -> dict[str, str]:
        return {self.prompt.name: self.prompt.sha256}


@dataclass
class AlpacaTask:
    """An accepted machine-written task on its way to a record."""
    instruction: str
    input: str
    output: str
    round: int
    parents: list[str]
    request: str
    scores: dict[str, Any]


def seed_example(seed: SeedTask) -> dict[str, str]:
    """A seed as Alpaca shows it: its first instance gives input and output."""
    first = seed.instances[0] if seed.instances else {}
    return {"instruction": seed.instruction, "input": first.get("input", "") or "",
            "output": first.get("output", "") or ""}


def encode_prompt(template: Template, examples: list[dict[str, str]]) -> str:
    """The requirements, then each example as a `###` block numbered 1..k, ending with `k+1. Instruction:`."""
    parts = [template.render().rstrip() + "\n"]
    for i, ex in enumerate(examples, 1):
        instruction = re.sub(r"\s+", " ", ex["instruction"]).strip().rstrip(":")
        inp = ex["input"] if ex["input"] else NOINPUT
        parts.append(f"###\n{i}. Instruction: {instruction}\n{i}. Input:\n{inp}\n{i}. Output:\n{ex['output']}\n")
    parts.append(f"###\n{len(examples) + 1}. Instruction:")
    return "".join(parts)


def parse_alpaca_response(text: str, finish_reason: str,
                          first_index: int = 4) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Items (instruction/input/output) of a continued list, and (reason, raw text) of items dropped.

    A response cut by length loses only its last item (`length_cut`); an item without exactly the three
    numbered fields is `malformed`. Blank pieces (the tail after the final `###`) are not items.
    """
    pieces = re.split("###", f"{first_index}. Instruction:" + text)
    items: list[dict[str, str]] = []
    dropped: list[tuple[str, str]] = []
    for idx, piece in enumerate(pieces):
        if idx == len(pieces) - 1 and finish_reason == "length":
            if piece.strip():
                dropped.append(("length_cut", piece))
            continue
        if not piece.strip():
            continue
        split = _FIELDS.split(piece)
        if len(split) != 7:
            dropped.append(("malformed", piece))
            continue
        inp = split[4].strip()
        items.append({"instruction": split[2].strip(),
                      "input": "" if inp.lower() == NOINPUT else inp,
                      "output": split[6].strip()})
    return items, dropped


def prompts_needed(remaining: int, per_call: int, per_round: int) -> int:
    """Prompts for a round: enough for what remains at `per_call` each, capped, at least 1."""
    return max(1, min(per_round, math.ceil(max(remaining, 0) / per_call)))


class AlpacaState(BootstrapState):
    """Everything an Alpaca run knows between rounds. Answers are folded in request order, so the same
    seeds, flags and teacher answers always give the same dataset, whatever order answers arrive in."""

    stall_unit = "round"
    stall_setting = "config alpaca.rouge_threshold"

    variant_meta = {"variant": "alpaca"}

    def __init__(self, seeds: list[SeedTask], params: AlpacaParams, templates: AlpacaTemplates):
        super().__init__(seeds, params)
        self.templates = templates
        self.rules = InstructionRules(min_words=4, max_words=150, blacklist=ALPACA_BLACKLIST)
        # Seeds with an instance make complete examples; a pool without any falls back to all seeds.
        self.examples = [s for s in seeds if s.instances] or list(seeds)
        self.rng = random.Random(params.seed)
        self.done: list[AlpacaTask] = []

    # --- decisions -------------------------------------------------------------------------------

    def prompt_count(self) -> int:
        if self.needed() == 0 or self.stalled >= self.params.max_stalled_rounds:
            return 0
        return prompts_needed(self.needed(), self.params.instructions_per_call, self.params.prompts_per_round)

    # --- steps -----------------------------------------------------------------------------------
    def _prompts(self, n: int) -> list[tuple[str, list[str]]]:
        out = []
        k = min(self.params.seeds_per_prompt, len(self.examples))
        for _ in range(n):
            shots = self.rng.sample(self.examples, k)
            prompt = encode_prompt(self.templates.prompt, [seed_example(s) for s in shots])
            out.append((prompt, [s.id for s in shots]))
        return out

    async def bootstrap_round(self, teacher: Teacher) -> int:
        """One round: up to prompts_per_round prompts at once; returns how many tasks were accepted."""
        n = self.prompt_count()
        if n == 0:
            return 0
        self.round += 1
        prompts = self._prompts(n)
        params = self.params.sampling()
        # A per-request seed (from --seed and the prompt's position in the run) makes sampled answers
        # reproducible on servers that honour it, even with a cold cache.
        answers = await self._ask_all([
            teacher.complete(p, {**params, "seed": self.params.seed * 1_000_003 + self.prompts_sent + i},
                             kind=KIND)
            for i, (p, _) in enumerate(prompts)])
        self.prompts_sent += n
        accepted = 0
        for (_, parents), answer in zip(prompts, answers):
            if answer is None:
                continue
            self.counts["alpaca.responses"] += 1
            if answer.finish_reason == "content_filter":
                self.reject("bootstrap", "content_filter", answer.text, {"request": answer.key})
                continue
            items, dropped = parse_alpaca_response(answer.text, answer.finish_reason, len(parents) + 1)
            for reason, raw in dropped:
                self.reject("bootstrap", reason, raw.strip(), {"request": answer.key})
            for item in items:
                self.counts["alpaca.candidates"] += 1
                text = item["instruction"]
                fields = {"input": item["input"], "output": item["output"]}
                if self.needed() == 0:
                    self.reject("target", "beyond_target", text,
                                {"target": self.params.num_instructions, "request": answer.key, **fields})
                    continue
                verdict = self.rules(text)
                if verdict.keep:
                    verdict = self.novelty.check_and_add(text)
                if not verdict.keep:
                    self.reject("bootstrap", verdict.reason, text, {**verdict.detail, **fields})
                    continue
                self.done.append(AlpacaTask(instruction=text, input=item["input"], output=item["output"],
                                            round=self.round, parents=list(parents), request=answer.key,
                                            scores=rouge_scores(verdict.detail)))
                accepted += 1
        self.counts["alpaca.accepted"] += accepted
        self.stalled = 0 if accepted else self.stalled + 1
        return accepted

    def finish(self) -> None:
        """Nothing to trim: items beyond the target were rejected as they were folded in."""

    def summary_counts(self, n_records: int) -> dict[str, Any]:
        return super().summary_counts(n_records, prompts_key="alpaca.prompts")

    def records(self, teacher_model: str) -> list[Record]:
        return [Record(instruction=t.instruction, input=t.input, output=t.output, method="self_instruct",
                       parents=list(t.parents), round=t.round, lang="en",
                       teacher={"model": teacher_model, "request": t.request}, scores=dict(t.scores),
                       meta={"variant": "alpaca"})
                for t in self.done]


def sampling_table(params: AlpacaParams) -> dict[str, dict[str, Any]]:
    """The request kind's sampling parameters, as sent (for the manifest)."""
    return {KIND: {**params.sampling(), "seed": "per request, from --seed"}}
