"""Self-Instruct (Wang et al. 2022, yizhongw/self-instruct), faithful to the released code (DESIGN §5).

A run alternates small steps the flow wires together: a bootstrap round (new instructions from 6 seed
+ 2 machine instructions in a numbered list), classification identification, instance generation
(output-first for classification, input-first otherwise) and the instance filters. Everything here is
plain async Python over a Teacher: no Prefect, no network code.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.filters.instances import filter_instances
from datagen.filters.instruction import InstructionRules
from datagen.methods.common import BootstrapState, rouge_scores
from datagen.methods.templates import Template, load_template
from datagen.records import Record, content_id
from datagen.store.seeds import SeedTask
from datagen.teacher.client import Completion, Teacher

# Sampling exactly as the released scripts (bootstrap_instructions.py, identify_clf_or_not.py,
# generate_instances.py).
BOOTSTRAP_PARAMS = {"temperature": 0.7, "top_p": 0.5, "presence_penalty": 2, "frequency_penalty": 0,
                    "max_tokens": 1024, "stop": ["\n\n", "\n16", "16.", "16 ."]}
CLASSIFY_PARAMS = {"temperature": 0, "top_p": 0, "presence_penalty": 0, "frequency_penalty": 0,
                   "max_tokens": 3, "stop": ["\n", "Task"]}
INSTANCE_PARAMS = {"temperature": 0, "top_p": 0, "presence_penalty": 1.5, "frequency_penalty": 0,
                   "stop": ["Example 6", "Task:"]}
INSTANCE_MAX_TOKENS = {True: 300, False: 350}  # classification / generation

_NUMBERED = re.compile(r"\n\d+\s?\. ")
_EXAMPLE = re.compile(r"Example\s?\d*\.?")
_OUTPUT = re.compile(r"Output\s*\d*\s*:")
_INPUT = re.compile(r"Input\s*\d*\s*:")
_INPUT_PREFIX = re.compile(r"^Input\s*\d*\s*:")


@dataclass
class SelfInstructParams:
    num_instructions: int = 10          # target: new instructions that end with valid instances
    prompt_instructions: int = 8        # in-context instructions per bootstrap prompt
    machine_in_prompt: int = 2          # of which machine-generated, once the machine pool has some
    prompts_per_round: int = 8          # bootstrap prompts per round (at most)
    max_stalled_rounds: int = 5         # stop when this many rounds in a row accept nothing new
    rouge_threshold: float = 0.7
    rouge_tokenizer: str = "rouge_score"
    max_instances: int = 5
    seed: int = 42
    max_tokens: int | None = None       # caps every request's max_tokens (small models, tests)
    prompts_dir: str | None = None
    schedule: str = "overlapped"        # overlapped (steps in flight together) | sequential (round by round)
    window: int | None = None           # overlapped: bootstrap prompts ahead of the pool (None: max_concurrency)

    def __post_init__(self) -> None:
        for name, low, high in PARAM_RANGES:
            value = getattr(self, name)
            if value is None and name == "max_tokens":
                continue
            kind = float if name == "rouge_threshold" else int
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise ValueError(f"{name}: expected {'a number' if kind is float else 'a whole number'}, "
                                 f"got {value!r}")
            if not low <= value <= high:
                span = f"at least {low}" if high == math.inf else f"between {low} and {high}"
                raise ValueError(f"{name}: must be {span}, got {value}")
        if self.machine_in_prompt > self.prompt_instructions:
            raise ValueError(f"machine_in_prompt: must not exceed prompt_instructions "
                             f"({self.prompt_instructions}), got {self.machine_in_prompt}")
        if self.rouge_tokenizer not in ("rouge_score", "unicode"):
            raise ValueError(f"rouge_tokenizer: expected rouge_score or unicode, got {self.rouge_tokenizer!r}")
        if self.schedule not in ("overlapped", "sequential"):
            raise ValueError(f"schedule: expected overlapped or sequential, got {self.schedule!r}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or not 1 <= self.window <= 100_000):
            raise ValueError(f"window: must be a whole number between 1 and 100000, got {self.window!r}")
        if self.prompts_dir is not None and not isinstance(self.prompts_dir, str):
            raise ValueError(f"prompts_dir: expected a folder path, got {self.prompts_dir!r}")

    def sampling(self, base: dict[str, Any], max_tokens: int | None = None) -> dict[str, Any]:
        params = dict(base)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self.max_tokens is not None:
            params["max_tokens"] = min(params["max_tokens"], self.max_tokens)
        return params


# (setting, lowest, highest) meaningful values; checked before anything starts.
PARAM_RANGES = (("num_instructions", 1, math.inf), ("prompt_instructions", 1, 64), ("machine_in_prompt", 0, 64),
                ("prompts_per_round", 1, 100_000), ("max_stalled_rounds", 1, 1_000_000),
                ("rouge_threshold", 0.0, 1.0), ("max_instances", 1, 100), ("seed", -2**63, 2**63 - 1),
                ("max_tokens", 1, 1_000_000))


@dataclass
class MachineTask:
    """A machine-written instruction on its way to records."""
    id: str
    instruction: str
    round: int
    parents: list[str]
    request: str
    scores: dict[str, Any]
    is_classification: bool | None = None
    instances: list[tuple[str, str]] = field(default_factory=list)
    instance_request: str = ""


@dataclass
class Templates:
    bootstrap: Template
    classify: Template
    instances_clf: Template
    instances_gen: Template

    @classmethod
    def load(cls, prompts_dir: str | Path | None = None) -> "Templates":
        return cls(
            bootstrap=load_template("self_instruct", "bootstrap", prompts_dir, {"instructions"}),
            classify=load_template("self_instruct", "classify", prompts_dir, {"instruction"}),
            instances_clf=load_template("self_instruct", "instances_clf", prompts_dir, {"instruction"}),
            instances_gen=load_template("self_instruct", "instances_gen", prompts_dir, {"instruction"}),
        )

    def hashes(self) -> dict[str, str]:
        return {t.name: t.sha256 for t in (self.bootstrap, self.classify, self.instances_clf, self.instances_gen)}


def numbered_prompt(template: Template, instructions: list[str]) -> str:
    """Instructions numbered 1..k, ending with `k+1.` so the teacher continues the list."""
    lines = [f"{i}. " + re.sub(r"\s+", " ", text).strip() for i, text in enumerate(instructions, 1)]
    lines.append(f"{len(instructions) + 1}.")
    return template.render(instructions="\n".join(lines)).rstrip()


def parse_numbered_list(text: str) -> list[str]:
    """Split a continued numbered list into instructions, whitespace collapsed, first letter upper-cased."""
    out = []
    for piece in _NUMBERED.split(text):
        piece = re.sub(r"\s+", " ", piece).strip()
        if piece:
            out.append(piece[0].upper() + piece[1:])
    return out


def is_classification_answer(text: str) -> bool:
    return text.strip().lower().startswith("yes")


def _input_output(text: str) -> tuple[str, str]:
    if _OUTPUT.search(text):
        parts = _OUTPUT.split(text)
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", text.strip()
    if _INPUT.search(out):  # a second pair leaked into the output
        out = _INPUT.split(out)[0].strip()
    inp = _INPUT_PREFIX.sub("", inp).strip()
    return inp, out


def parse_generation_instances(text: str, finish_reason: str) -> list[tuple[str, str]]:
    """Input-first examples: `Example k` blocks of `<Field>: ...` then `Output: ...`."""
    text = text.strip()
    if _EXAMPLE.search(text):
        blocks = [b.strip() for b in _EXAMPLE.split(text) if b.strip()]
        instances = [_input_output(b) for b in blocks]
    elif _OUTPUT.search(text):
        instances = [_input_output(text)]
    else:
        return []
    if finish_reason == "length":
        instances = instances[:-1]  # the last one was cut off
    return instances


def parse_classification_instances(text: str, finish_reason: str) -> list[tuple[str, str]]:
    """Output-first examples: `Class label: X` then the input that deserves it."""
    if "Class label:" not in text:
        return []
    instances = []
    for block in text.split("Class label:")[1:]:
        label, _, rest = block.strip().partition("\n")
        instances.append((rest.strip(), label.strip()))
    if finish_reason == "length":
        instances = instances[:-1]
    return instances


def prompts_for(deficit: float, accepted: float, sent: int, per_round: int) -> int:
    """Bootstrap prompts for a round: enough for the deficit at the yield seen so far (2 per prompt
    before any is seen), discounted for instructions that will fail instance generation."""
    if deficit <= 0:
        return 0
    per_prompt = accepted / sent if sent and accepted else 2.0
    per_prompt *= 0.6
    return max(1, min(per_round, math.ceil(deficit / max(per_prompt, 0.25))))


def batch_size(pending: float, need: float) -> int:
    """Instructions to give instances to next: the need plus half again for the ones that fail."""
    return int(min(pending, need + math.ceil(need / 2)))


class SelfInstructState(BootstrapState):
    """Everything a Self-Instruct run knows between steps; methods below mutate it in a fixed order,
    so the same seeds, flags and teacher answers always give the same dataset."""

    stall_unit = "bootstrap round"
    stall_setting = "config self_instruct.rouge_threshold"

    def __init__(self, seeds: list[SeedTask], params: SelfInstructParams, templates: Templates):
        super().__init__(seeds, params)
        self.templates = templates
        self.rules = InstructionRules()
        self.rng = random.Random(params.seed)
        self.machine: list[MachineTask] = []    # every instruction the bootstrap accepted (the pool)
        self.pending: list[MachineTask] = []    # accepted, instances not generated yet
        self.done: list[MachineTask] = []       # accepted with at least one valid instance
        self.earlier = 0                        # machine[:earlier]: instructions published before (--extend)
        self.earlier_dedup: Any = None          # MinHash index of those, when continuing a dataset

    def continue_from(self, instructions: list[str]) -> None:
        """Start where a published dataset left off (`--extend`): its instructions join the ROUGE-L
        novelty index and the machine pool the bootstrap samples from, and a MinHash index of them drops
        a new instruction that is a near-duplicate the ROUGE-L threshold lets through. Before any step."""
        from datagen.filters.minhash import MinHashDedup

        if self.machine or self.prompts_sent:
            raise RuntimeError("continue_from: the run has already started")
        dedup = MinHashDedup()
        for text in dict.fromkeys(instructions):
            self.novelty.add(text)
            dedup.check_and_add(content_id(text), text)
            self.machine.append(MachineTask(id=content_id(text), instruction=text, round=0, parents=[],
                                            request="", scores={}))
        self.earlier = len(self.machine)
        self.earlier_dedup = dedup

    # --- decisions -------------------------------------------------------------------------------
    def waiting(self) -> bool:
        return bool(self.pending)

    def bootstrap_prompt_count(self) -> int:
        if self.stalled >= self.params.max_stalled_rounds:
            return 0
        return prompts_for(self.needed() - len(self.pending), len(self.machine), self.prompts_sent,
                           self.params.prompts_per_round)

    def take_batch(self) -> list[MachineTask]:
        size = batch_size(len(self.pending), self.needed())
        batch, self.pending = self.pending[:size], self.pending[size:]
        return batch

    # --- steps -----------------------------------------------------------------------------------
    def _bootstrap_prompts(self, n: int) -> list[tuple[str, list[str]]]:
        out = []
        k = self.params.prompt_instructions
        for _ in range(n):
            machine = self.rng.sample(self.machine, min(self.params.machine_in_prompt, len(self.machine)))
            seeds = self.rng.sample(self.seeds, min(k - len(machine), len(self.seeds)))
            shots = [(t.instruction, t.id) for t in machine] + [(s.instruction, s.id) for s in seeds]
            self.rng.shuffle(shots)
            prompt = numbered_prompt(self.templates.bootstrap, [s[0] for s in shots])
            out.append((prompt, [s[1] for s in shots]))
        return out

    def fold_answer(self, answer: Completion, round: int, parents: list[str]) -> list[MachineTask]:
        """One bootstrap answer into the pool: its instructions through the rules and the ROUGE-L
        novelty index, in order; the accepted ones join the machine pool at once and are returned."""
        self.counts["bootstrap.responses"] += 1
        accepted: list[MachineTask] = []
        if answer.finish_reason in ("length", "content_filter"):
            reason = "response_truncated" if answer.finish_reason == "length" else "content_filter"
            self.reject("bootstrap", reason, answer.text, {"request": answer.key})
        else:
            for instruction in parse_numbered_list(answer.text):
                self.counts["bootstrap.candidates"] += 1
                verdict = self.rules(instruction)
                if verdict.keep:
                    verdict = self._novel(instruction)
                if not verdict.keep:
                    self.reject("bootstrap", verdict.reason, instruction, dict(verdict.detail))
                    continue
                task = MachineTask(id=content_id(instruction), instruction=instruction, round=round,
                                   parents=parents, request=answer.key, scores=rouge_scores(verdict.detail))
                self.machine.append(task)
                accepted.append(task)
        self.counts["bootstrap.accepted"] += len(accepted)
        return accepted

    def _novel(self, instruction: str):
        """ROUGE-L against the seeds and every instruction kept so far (and, continuing a dataset, a
        MinHash check against it); a kept instruction joins both indexes."""
        if self.earlier_dedup is None:
            return self.novelty.check_and_add(instruction)
        verdict = self.novelty.check(instruction)
        if verdict.keep:
            near = self.earlier_dedup.check_and_add(content_id(instruction), instruction)
            if not near.keep:
                return near
            self.novelty.add(instruction)
        return verdict

    async def bootstrap_round(self, teacher: Teacher) -> int:
        """One round of new instructions; returns how many were accepted."""
        n = self.bootstrap_prompt_count()
        if n == 0:
            return 0
        self.round += 1
        prompts = self._bootstrap_prompts(n)
        params = self.params.sampling(BOOTSTRAP_PARAMS)
        # A per-request seed (from --seed and the prompt's position in the run) makes sampled answers
        # reproducible on servers that honour it (llama.cpp, vLLM, OpenAI) even with a cold cache.
        answers = await self._ask_all([
            teacher.complete(p, {**params, "seed": self.params.seed * 1_000_003 + self.prompts_sent + i},
                             kind="bootstrap")
            for i, (p, _) in enumerate(prompts)])
        self.prompts_sent += n
        accepted = 0
        for (_, parents), answer in zip(prompts, answers):
            if answer is None:
                continue
            tasks = self.fold_answer(answer, self.round, parents)
            self.pending.extend(tasks)
            accepted += len(tasks)
        self.stalled = 0 if accepted else self.stalled + 1
        return accepted

    async def classify(self, teacher: Teacher, batch: list[MachineTask]) -> None:
        params = self.params.sampling(CLASSIFY_PARAMS)
        prompts = [self.templates.classify.render(instruction=t.instruction).rstrip() for t in batch]
        answers = await self._ask_all([teacher.complete(p, params, kind="classify") for p in prompts])
        for task, answer in zip(batch, answers):
            if answer is None:
                continue
            task.is_classification = is_classification_answer(answer.text)
            self.counts["classify.yes" if task.is_classification else "classify.no"] += 1

    def instance_request(self, task: MachineTask) -> tuple[str, dict[str, Any]]:
        """The instance-generation prompt and sampling for a classified task (output-first for
        classification tasks, input-first otherwise)."""
        tpl = self.templates.instances_clf if task.is_classification else self.templates.instances_gen
        prompt = tpl.render(instruction=task.instruction.strip()).rstrip() + "\n"
        return prompt, self.params.sampling(INSTANCE_PARAMS, INSTANCE_MAX_TOKENS[bool(task.is_classification)])

    def apply_instances(self, task: MachineTask, answer: Completion, reject=None) -> bool:
        """Parse and filter one answer's instances into `task`; False (and why, to `reject`) when none
        survive or the answer was filtered."""
        reject = reject or self.reject
        task.instance_request = answer.key
        if answer.finish_reason == "content_filter":
            reject("instances", "content_filter", task.instruction, {"request": answer.key})
            return False
        parse = parse_classification_instances if task.is_classification else parse_generation_instances
        raw = parse(answer.text, answer.finish_reason)
        kept, dropped = filter_instances(raw, self.params.max_instances)
        for (inp, out), verdict in dropped:
            reject("instances", verdict.reason, task.instruction, {**verdict.detail, "input": inp, "output": out})
        if not kept:
            reject("instances", "no_valid_instances", task.instruction,
                   {"parsed": len(raw), "request": answer.key, "response": answer.text[:2000]})
            return False
        task.instances = kept
        self.counts["instances.kept"] += len(kept)
        self.counts["instances.tasks_valid"] += 1     # whether or not the target still needed it
        return True

    async def generate_instances(self, teacher: Teacher, batch: list[MachineTask]) -> None:
        """Instances for each task; tasks with none left after the filters are rejected whole."""
        unclassified = [t for t in batch if t.is_classification is None]
        self.pending[:0] = unclassified          # the budget stopped their classification
        batch = [t for t in batch if t.is_classification is not None]
        requests = []
        for t in batch:
            prompt, params = self.instance_request(t)
            requests.append(teacher.complete(prompt, params, kind="instances"))
        answers = await self._ask_all(requests)
        for task, answer in zip(batch, answers):
            if answer is None:
                self.pending.append(task)
                continue
            if self.apply_instances(task, answer):
                self.done.append(task)

    def finish(self) -> None:
        """Trim to the target; whatever is beyond it is written down, not silently dropped."""
        extra, self.done = self.done[self.params.num_instructions:], self.done[:self.params.num_instructions]
        for t in extra:
            self.reject("target", "beyond_target", t.instruction, {"target": self.params.num_instructions})
        for t in self.pending:
            if self.stop_reason == "budget":
                self.reject("target", "budget_exhausted", t.instruction,
                            {"note": f"accepted by the bootstrap; the {self.budget_stop} stopped the run first"})
            else:
                self.reject("target", "not_needed", t.instruction,
                            {"note": "accepted by the bootstrap; the target was met before it got instances"})
        self.pending = []

    def records(self, teacher_model: str) -> list[Record]:
        out = []
        for t in self.done:
            for k, (inp, outp) in enumerate(t.instances):
                out.append(Record(
                    instruction=t.instruction, input=inp, output=outp, method="self_instruct",
                    parents=list(t.parents), round=t.round, lang="en",
                    teacher={"model": teacher_model, "request": t.request, "instances_request": t.instance_request},
                    scores=dict(t.scores),
                    meta={"task_id": t.id, "is_classification": bool(t.is_classification), "instance": k},
                ))
        return out


def sampling_table(params: SelfInstructParams) -> dict[str, dict[str, Any]]:
    """Every request kind's sampling parameters, as sent (for the manifest)."""
    return {"bootstrap": {**params.sampling(BOOTSTRAP_PARAMS), "seed": "per request, from --seed"},
            "classify": params.sampling(CLASSIFY_PARAMS),
            "instances_classification": params.sampling(INSTANCE_PARAMS, INSTANCE_MAX_TOKENS[True]),
            "instances_generation": params.sampling(INSTANCE_PARAMS, INSTANCE_MAX_TOKENS[False])}
