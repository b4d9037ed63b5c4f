"""Self-Instruct with its steps overlapped: bootstrap prompts, classification and instance generation
in flight together, so the teacher is kept as busy as --max-concurrency allows.

The released code runs round after round (8 prompts, then classification, then instances): a chain of
latencies that keeps ~2% of 256 allowed requests in flight. Here prompt k goes out as soon as
answer k-W has been folded in and the tasks it produced have their instances, W being the window:

- prompt k samples its machine instructions from the pool as it stood after answers 0..k-W were
  folded in, with an RNG of its own (from --seed and k), and does not wait for anything else;
- answers are folded into the ROUGE-L pool strictly in request order (a reorder buffer), and each
  accepted task gets its classification and instances at once;
- whether prompt k is sent at all is estimated from fixed snapshots (tasks accepted up to answer
  k-W, the share that got instances up to k-2W), and, once the estimate says the target may be met,
  decided on the state after every earlier prompt is resolved; if that state is still short, enough
  prompts for the shortfall go out together (a deterministic burst), not one latency chain each;
- a task is classified and given instances only if the tasks before it in fold order may fall short
  of the target: estimated from the outcomes of tasks up to 2W before it, and, when that estimate
  says enough, decided once every earlier task has finished (then as many tasks as the shortfall
  needs go together). Tasks the target does not need are not paid for, and since each decision
  depends on outcomes only, the same run sends the same requests whatever the latencies;
- the records are the first `num_instructions` tasks, in fold order, that end with valid instances.

So the same seeds, --seed and window give the same dataset whatever the latencies and the order in
which answers arrive; a rerun after a kill replays every cached answer and asks only for the rest.
"""
from __future__ import annotations

import asyncio
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

from datagen.crashpoints import crash_point
from datagen.methods.self_instruct import BOOTSTRAP_PARAMS, MachineTask, SelfInstructState, numbered_prompt
from datagen.methods.evol import derived_seed
from datagen.teacher.client import BudgetExhausted

SCHEDULES = ("overlapped", "sequential")


# Before any answer is known: each prompt is assumed to end with one instruction with instances (the
# first window is then at most the target), and 90% of accepted tasks to get valid instances (a share the need gate also starts from).
PRIOR_YIELD = 1.0
PRIOR_SUCCESS = 0.9


@dataclass
class _Folded:
    """What is known once answers 0..j are folded into the pool."""
    accepted: int = 0          # tasks accepted by the bootstrap up to answer j
    stall_run: int = 0         # consecutive answers, ending at j, that accepted nothing


@dataclass
class _Snapshot:
    """What is known once answers 0..j are folded in and their tasks resolved."""
    machine_len: int = 0       # the pool prefix prompts may sample from
    done: int = 0              # tasks of answers 0..j with valid instances
    accepted: int = 0          # tasks of answers 0..j


@dataclass
class _Prompt:
    k: int
    text: str
    parents: list[str]
    tasks: list[MachineTask] = field(default_factory=list)
    machine_len: int = 0
    folded: asyncio.Event = field(default_factory=asyncio.Event)
    resolved: asyncio.Event = field(default_factory=asyncio.Event)
    task_rejects: list[list[dict[str, Any]]] = field(default_factory=list)
    first_task: int = 0        # fold-order index of its first task


class OverlappedRun:
    """Drives a SelfInstructState with a window of W prompts; `run(teacher)` until done."""

    def __init__(self, state: SelfInstructState, window: int):
        if window < 1:
            raise ValueError(f"window: must be at least 1, got {window}")
        self.state, self.window = state, window
        state.stall_unit, state.stall_n = "bootstrap prompt", self._stall_limit_of(state)
        self.prompts: list[_Prompt] = []
        self.snapshots: list[_Snapshot] = []        # index j: after answer j folded and resolved
        self.folds: list[_Folded] = []               # index j: after answer j folded
        self._answers: dict[int, Any] = {}
        self._next_fold = 0
        self._fold_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.stopped = ""                            # why no further prompt was sent
        self.with_instances = 0                      # tasks that got valid instances so far (for progress)
        self.on_progress = None                      # callback(run) after each fold / resolution
        # the need gate: per task in fold order, None (not finished), 1 (instances), 0 (none), -1 (skipped)
        self._outcomes: list[int | None] = []
        self._decided: list[asyncio.Event] = []
        self._finished_prefix = 0                    # tasks 0..n-1 have all finished
        self._done_prefix, self._tried_prefix = [0], [0]   # cumulative over that prefix
        self._waiting: list[tuple[int, int, asyncio.Future]] = []   # heap of (prefix needed, id, wake-up)
        self._task_burst_until = 0                   # tasks below this go without the estimate
        self._burst_until = 0                        # prompts below this go out without the estimate

    # --- decisions ------------------------------------------------------------------------------
    @staticmethod
    def _stall_limit_of(state: SelfInstructState) -> int:
        """max_stalled_rounds rounds of prompts_per_round prompts each, counted in prompts."""
        return state.params.max_stalled_rounds * state.params.prompts_per_round

    def _stall_limit(self) -> int:
        return self._stall_limit_of(self.state)

    def _snapshot(self, j: int) -> _Snapshot:
        return self.snapshots[j] if j >= 0 else _Snapshot()

    async def _wait_resolved(self, j: int) -> None:
        if j >= 0:
            await self.prompts[j].resolved.wait()
        self._check()

    async def _wait_folded(self, j: int) -> None:
        if j >= 0:
            await self.prompts[j].folded.wait()
        self._check()

    async def _may_send(self, k: int) -> bool:
        """Whether prompt k goes out; every input to the decision is fixed by k and the answers.

        Prompt k needs answer k-W folded in (its sample comes from that pool). How many instructions
        the prompts so far will end with is estimated from what is known by then without waiting for
        instance generation: tasks accepted up to answer k-W, times the share of tasks that got valid
        instances up to answer k-2W (resolved long since), plus the yield per prompt for the prompts
        still in flight. Only when that estimate reaches the target does prompt k wait for every
        earlier prompt to be resolved, and goes out only if the target is still not met."""
        s = self.state
        target = s.params.num_instructions
        j = k - self.window
        await self._wait_folded(j)
        jr = j - self.window
        await self._wait_resolved(jr)
        if s.budget_stop:
            self.stopped = "budget"
            return False
        folded, resolved = self._folded(j), self._snapshot(jr)
        if folded.stall_run >= self._stall_limit():
            self.stopped = "stalled"
            return False
        if k < self._burst_until:
            return True
        success = resolved.done / resolved.accepted if resolved.accepted else PRIOR_SUCCESS
        expected = folded.accepted * success
        answered = j + 1 if j >= 0 else 0
        per_prompt = expected / answered if answered else PRIOR_YIELD
        if expected + per_prompt * (k - answered) < target:
            return True
        # The estimate says the prompts in flight may be enough: decide on everything sent so far.
        await self._wait_resolved(k - 1)
        full = self._snapshot(k - 1)
        if full.done >= target:
            self.stopped = "target_reached"
            return False
        if self._folded(k - 1).stall_run >= self._stall_limit():
            self.stopped = "stalled"
            return False
        if s.budget_stop:
            return False
        # Short by `target - done` with everything so far resolved: send the prompts that shortfall
        # needs at the yield seen so far, together (decided on resolved state only, so deterministic).
        per_prompt = full.done / k if k else PRIOR_YIELD
        burst = math.ceil((target - full.done) / max(per_prompt, 1.0 / self.window))
        self._burst_until = k + max(1, min(burst, self.window))
        return True

    def _folded(self, j: int) -> "_Folded":
        return self.folds[j] if j >= 0 else _Folded()

    def _prompt_text(self, k: int) -> tuple[str, list[str]]:
        s = self.state
        j = k - self.window
        pool = s.machine[:self.prompts[j].machine_len] if j >= 0 else s.machine[:s.earlier]
        rng = random.Random(derived_seed(s.params.seed, "bootstrap", k))
        machine = rng.sample(pool, min(s.params.machine_in_prompt, len(pool)))
        seeds = rng.sample(s.seeds, min(s.params.prompt_instructions - len(machine), len(s.seeds)))
        shots = [(t.instruction, t.id) for t in machine] + [(x.instruction, x.id) for x in seeds]
        rng.shuffle(shots)
        return numbered_prompt(s.templates.bootstrap, [x[0] for x in shots]), [x[1] for x in shots]

    # --- the loop -------------------------------------------------------------------------------
    async def run(self, teacher: Any) -> None:
        s = self.state
        params = s.params.sampling(BOOTSTRAP_PARAMS)
        k = 0
        try:
            while await self._may_send(k):
                text, parents = self._prompt_text(k)
                prompt = _Prompt(k=k, text=text, parents=parents)
                self.prompts.append(prompt)
                self._spawn(self._bootstrap(prompt, teacher, {**params, "seed": derived_seed(s.params.seed, "seed", k)}))
                s.prompts_sent += 1
                k += 1
            for p in self.prompts:
                await p.resolved.wait()
            self._check()
        finally:
            for t in self._tasks:
                t.cancel()
        s.round = len(self.prompts)
        s.stop_reason = ("budget" if s.budget_stop else
                         "target_reached" if len([t for t in self._fold_order() if t.instances]) >= s.params.num_instructions
                         else (self.stopped or "stalled"))
        self._finish()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._failure_seen:
            self._failure_seen = True
            self._failure = task.exception()
            for p in self.prompts:       # wake every waiter; run() re-raises
                p.folded.set()
                p.resolved.set()

    _failure_seen = False
    _failure: BaseException | None = None

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _bootstrap(self, prompt: _Prompt, teacher: Any, params: dict[str, Any]) -> None:
        try:
            answer = await teacher.complete(prompt.text, params, kind="bootstrap", sample=0)
        except BudgetExhausted as e:
            self.state.budget_stop = e.reason
            answer = None
        self._answers[prompt.k] = answer
        async with self._fold_lock:
            while self._next_fold in self._answers:
                j = self._next_fold
                self._fold(self.prompts[j], self._answers.pop(j), teacher)
                self._next_fold += 1

    def _fold(self, prompt: _Prompt, answer: Any, teacher: Any) -> None:
        """Answer j into the pool, in request order; its tasks start their classification at once."""
        s = self.state
        s.round = prompt.k + 1
        accepted = s.fold_answer(answer, prompt.k + 1, prompt.parents) if answer is not None else []
        prompt.tasks = accepted
        prompt.task_rejects = [[] for _ in accepted]
        prompt.first_task = len(self._outcomes)
        self._outcomes.extend([None] * len(accepted))
        self._decided.extend(asyncio.Event() for _ in accepted)
        prompt.machine_len = len(s.machine)
        prev = self._folded(prompt.k - 1)
        self.folds.append(_Folded(accepted=prev.accepted + len(accepted),
                                  stall_run=0 if accepted else prev.stall_run + 1))
        prompt.folded.set()
        crash_point("overlapped.after_fold")
        self._spawn(self._resolve(prompt, teacher))
        if self.on_progress:
            self.on_progress(self)

    async def _resolve(self, prompt: _Prompt, teacher: Any) -> None:
        """Classification and instances for every task of one answer; then its snapshot, in order."""
        await asyncio.gather(*(self._task(prompt, i, t, teacher) for i, t in enumerate(prompt.tasks)))
        if prompt.k > 0:
            await self.prompts[prompt.k - 1].resolved.wait()     # snapshots are cumulative, in order
        self._check()
        prev = self._snapshot(prompt.k - 1)
        done = sum(1 for t in prompt.tasks if t.instances)
        self.snapshots.append(_Snapshot(machine_len=prompt.machine_len, done=prev.done + done,
                                        accepted=prev.accepted + len(prompt.tasks)))
        prompt.resolved.set()
        crash_point("overlapped.after_resolve")
        if self.on_progress:
            self.on_progress(self)

    async def _task(self, prompt: _Prompt, i: int, task: MachineTask, teacher: Any) -> None:
        """One task's classification and instances; its rejects are kept aside and written in order."""
        s = self.state
        sink = _Sink(s, task.round)
        index = prompt.first_task + i
        outcome = -1
        try:
            if not await self._needed(index):
                return          # beyond the target whatever it would get: no classification, no instances
            outcome = 0
            await s.classify(teacher, [task])
            if task.is_classification is None:
                return
            prompt_text, params = s.instance_request(task)
            try:
                answer = await teacher.complete(prompt_text, params, kind="instances")
            except BudgetExhausted as e:
                s.budget_stop = e.reason
                return
            if s.apply_instances(task, answer, sink.reject):
                self.with_instances += 1
                outcome = 1
        finally:
            prompt.task_rejects[i] = sink.rows
            self._finish_task(index, outcome)

    # --- the need gate --------------------------------------------------------------------------
    # Task i (in fold order) is decided after task i-1, on outcomes that are fixed by then: those of
    # tasks 0..i-L (L = 2W, finished long since in the middle of a run). Expected to fall short
    # without it -> it goes; tasks 0..i-L already hold the target -> skipped. Otherwise it waits for
    # every earlier task to finish and goes only if they fall short, and then so do as many after it
    # as that shortfall needs at the success rate seen (a burst, not one latency chain each). Every
    # decision is a function of outcomes, never of timing, so the same run sends the same requests.
    def _prefix_wait(self, n: int):
        """A future done once tasks 0..n-1 have all finished."""
        wake = asyncio.get_running_loop().create_future()
        if self._finished_prefix >= n:
            wake.set_result(None)
        else:
            heapq.heappush(self._waiting, (n, id(wake), wake))
        return wake

    def _finish_task(self, index: int, outcome: int) -> None:
        self._outcomes[index] = outcome
        while self._finished_prefix < len(self._outcomes) and self._outcomes[self._finished_prefix] is not None:
            self._done_prefix.append(self._done_prefix[-1] + (self._outcomes[self._finished_prefix] == 1))
            self._tried_prefix.append(self._tried_prefix[-1] + (self._outcomes[self._finished_prefix] >= 0))
            self._finished_prefix += 1
        while self._waiting and self._waiting[0][0] <= self._finished_prefix:
            wake = heapq.heappop(self._waiting)[2]
            if not wake.done():
                wake.set_result(None)

    async def _needed(self, index: int) -> bool:
        if index > 0:
            await self._decided[index - 1].wait()
            self._check()
        try:
            return await self._decide(index)
        finally:
            self._decided[index].set()

    async def _decide(self, index: int) -> bool:
        target = self.state.params.num_instructions
        lag = 2 * self.window
        j = index - lag                       # tasks 0..j decide the estimate
        if j >= 0:
            await self._prefix_wait(j + 1)
            self._check()
        done, tried = (self._done_prefix[j + 1], self._tried_prefix[j + 1]) if j >= 0 else (0, 0)
        if done >= target:
            return False
        success = (done + 10 * PRIOR_SUCCESS) / (tried + 10)
        if index < self._task_burst_until or done + (index - max(j + 1, 0)) * success < target:
            return True
        await self._prefix_wait(index)        # the estimate says enough: decide on every earlier task
        self._check()
        done, tried = self._done_prefix[index], self._tried_prefix[index]
        if done >= target:
            return False
        success = (done + 10 * PRIOR_SUCCESS) / (tried + 10)
        self._task_burst_until = index + math.ceil((target - done) / max(success, 0.05))
        return True

    def _fold_order(self) -> list[MachineTask]:
        return [t for p in self.prompts for t in p.tasks]

    def _finish(self) -> None:
        """Records: the first num_instructions tasks with instances, in fold order. Tasks after the last
        of them are `not_needed` whatever became of them (some were skipped, some ran while earlier
        answers were in flight), so rejected.jsonl does not depend on timing either."""
        s = self.state
        target = s.params.num_instructions
        s.done, s.pending = [], []
        for p in self.prompts:
            for task, rows in zip(p.tasks, p.task_rejects):
                if len(s.done) >= target:
                    s.reject("target", "not_needed", task.instruction,
                             {"note": "accepted by the bootstrap while earlier prompts were in flight; the target "
                                      "was met by earlier tasks", "target": target})
                    continue
                s.rejected.extend(rows)
                for row in rows:
                    s.counts[f"rejected.{row['stage']}.{row['reason']}"] += 1
                if task.instances:
                    s.done.append(task)
                elif s.budget_stop and (task.is_classification is None or not task.instance_request):
                    s.reject("target", "budget_exhausted", task.instruction,
                             {"note": f"accepted by the bootstrap; the {s.budget_stop} stopped the run first"})


class _Sink:
    """Collects one task's rejected rows instead of appending them to the shared list at once."""

    def __init__(self, state: SelfInstructState, round: int):
        self.state, self.round = state, round
        self.rows: list[dict[str, Any]] = []

    def reject(self, stage: str, reason: str, text: str, detail: dict[str, Any] | None = None) -> None:
        before = len(self.state.rejected)
        self.state.reject(stage, reason, text, detail)
        row = self.state.rejected.pop(before)
        row["record"]["round"] = self.round          # the task's round, not the one being folded now
        self.state.counts[f"rejected.{stage}.{reason}"] -= 1
        self.rows.append(row)
