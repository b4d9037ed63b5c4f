"""Scale-out on Dask: a recipe's teacher requests run on the workers of prefect-dask's DaskTaskRunner.

What is sharded is the one thing that costs: the teacher requests. The flow itself, its method state
(sampling, the ROUGE-L and MinHash novelty index), the response cache, the budget and the accounting
stay in the driver process; `Teacher.remote` hands each cache miss to a `DaskRequests`, which gathers
the misses in flight into micro-batches and submits each batch as one Prefect task, `teacher-requests`,
that a Dask worker runs: it posts the batch's requests concurrently, with the teacher client's own
retries and backoff, and returns the answers. The driver then caches, accounts and filters them as
if it had sent them itself. Chosen over sharding whole recipes because:

- dedup stays correct across shards with nothing to merge: there is one novelty index (a "shared
  index"), so no shard can accept an instruction another shard's near-duplicate already took, and the
  same seed, cache and answers give the same records with 1, 2 or N workers (tests/test_dask.py);
- there is one response cache with one writer (SQLite), so no per-worker caches to merge and a
  rerun on any runner replays it without a request;
- --max-concurrency, --rpm/--tpm, the budget and a shared limit stay global: the driver holds a slot
  for each request for as long as a worker has it.
Micro-batches, not a task per request: a Prefect task run costs 110-140 ms from submit to its body on an
idle worker and 0.2-0.3 s of CPU across driver, worker and server (Prefect rebuilds its settings and API
clients per task run). A batch holds at most --max-concurrency / workers requests, and at most two
batches per worker are in flight (one on the wire, one starting); requests arriving meanwhile merge
into the next. A batch returns when its slowest request does. The workers report their task runs to
the flow's Prefect server, so --runner dask needs one they can reach (PREFECT_API_URL, or datagen's
background server). Measured by bench/scale_out.py on one 2-core machine (0.5 s teacher, C=32): 1, 2
and 4 workers give 0.67, ~0.6 and 0.46x the single process's requests/s, the per-batch CPU and the
workers' start-up deciding; a cluster pays off only where the requests must be sent from its machines.

API keys never travel with the tasks: a worker reads the same environment variable the driver read
(OPENAI_API_KEY, DATAGEN_API_KEY, DATAGEN_<ROLE>_API_KEY) from its own environment.
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import os
from collections import Counter
from typing import Any, Callable
from urllib.parse import urlsplit

from prefect import task
from prefect.cache_policies import NONE

from datagen.errors import DatagenError, TeacherUnavailable
from datagen.runspec import RunnerSpec
from datagen.teacher.config import TeacherConfig

LINGER_S = 0.005     # how long a batch waits for more requests once the first is queued


def task_runner(spec: RunnerSpec):
    """prefect-dask's task runner for a spec: an existing scheduler, or a LocalCluster of N worker
    processes with `threads` threads each (each thread runs one batch at a time on its own event loop)."""
    from prefect_dask import DaskTaskRunner

    if spec.address:
        return DaskTaskRunner(address=spec.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": spec.workers, "threads_per_worker": spec.threads or 2,
                                          "processes": True, "dashboard_address": ":0"})


def with_runner(flow_fn: Any, run: dict[str, Any]) -> Any:
    """The recipe's flow on the run's runner: itself for local, on a DaskTaskRunner for dask."""
    spec = RunnerSpec.from_run(run)
    if spec.kind != "dask":
        return flow_fn
    # distributed logs every worker start and stop at INFO; a CLI run shows its own progress instead
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    import logging
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return flow_fn.with_options(task_runner=task_runner(spec))


def key_vars(cfg: TeacherConfig, role: str) -> list[str]:
    """The environment variables a worker reads its API key from: those holding the driver's key."""
    if not cfg.api_key:
        return []
    names = [f"DATAGEN_{role.upper()}_API_KEY", "DATAGEN_API_KEY", "OPENAI_API_KEY"]
    return [n for n in names if os.environ.get(n) == cfg.api_key] or names[-1:]


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid-{os.getpid()}"


@task(name="teacher-requests", cache_policy=NONE)
async def teacher_requests(cfg: TeacherConfig, keys: list[str], requests: list[tuple[str, dict[str, Any], int]]) -> dict[str, Any]:
    """On a Dask worker: post a micro-batch of requests concurrently, with retries; every answer or
    error comes back (a request's failure is its own, not the batch's)."""
    from datagen.teacher.client import Teacher

    worker = _worker_name()
    key = next((os.environ[k] for k in keys if os.environ.get(k)), None)
    if keys and key is None:
        raise DatagenError(f"dask worker {worker}: {keys[0]} is not set in the worker's environment (the API key "
                           "never travels with the tasks): set it where the workers start")
    cfg = dataclasses.replace(cfg, api_key=key)
    teacher = Teacher(cfg, cache=None)
    try:
        answers = await asyncio.gather(*(teacher.send(path, body, tokens) for path, body, tokens in requests),
                                       return_exceptions=True)
    finally:
        await teacher.aclose()
    results = []
    for a in answers:
        if isinstance(a, BaseException):
            kind = ("unavailable" if isinstance(a, TeacherUnavailable) else
                    "user" if isinstance(a, DatagenError) else "bug")
            results.append({"error": kind, "message": str(a) if kind != "bug" else f"{type(a).__name__}: {a}"})
        else:
            results.append({"data": a})
    return {"worker": worker, "results": results, "attempts": teacher.usage.attempts,
            "retries": dict(teacher.usage.retries)}


async def _finished(future: Any) -> None:
    """Wait for a Dask future without holding a thread (the default pool has cpu + 4 of them)."""
    wrapped = getattr(future, "wrapped_future", None)
    if wrapped is None:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake(_: Any) -> None:
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    wrapped.add_done_callback(wake)
    await done


class DaskRequests:
    """Teacher.remote for one endpoint: cache misses in, micro-batches out to `teacher-requests` tasks.
    Made in the flow, outside any task (see _context)."""

    def __init__(self, cfg: TeacherConfig, role: str, batch_max: int, max_batches: int,
                 submit: Callable[..., Any] | None = None):
        self.cfg, self.role = cfg, role
        self.batch_max = max(1, batch_max)
        self.max_batches = max(1, max_batches)   # batches in flight at once; more requests wait and merge
        self.keys = key_vars(cfg, role)
        self._submit = submit or teacher_requests.submit
        self._queue: list[tuple[str, str, dict[str, Any], int, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._pump: asyncio.Task | None = None
        self._sending: set[asyncio.Task] = set()
        self._freed = asyncio.Event()
        self.per_worker: Counter = Counter()
        self.batches = 0
        # Batches are submitted in the flow's own context, never in that of the task asking: Prefect
        # sends the submitting task's context (its parameters: method state, the Teacher) to the worker.
        self._context = contextvars.copy_context()

    async def post(self, base_url: str, path: str, body: dict[str, Any], tokens: int):
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((base_url, path, body, tokens, fut))
        if len(self._queue) >= self.batch_max:
            self._wake.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._batches(), context=self._context.copy())
        return await fut

    async def _batches(self) -> None:
        while self._queue:
            if len(self._queue) < self.batch_max:
                try:
                    await asyncio.wait_for(self._wake.wait(), LINGER_S)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            while len(self._sending) >= self.max_batches:
                # every worker has a batch on the wire and one queued: requests arriving now go together
                self._freed.clear()
                await self._freed.wait()
            batch, self._queue = self._queue[:self.batch_max], self._queue[self.batch_max:]
            sending = asyncio.create_task(self._send(batch), context=self._context.copy())
            self._sending.add(sending)
            sending.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._sending.discard(task)
        self._freed.set()

    def _worker_config(self, base_url: str, model: str) -> TeacherConfig:
        # the worker only sends: this run's rate limits, budget and shared limit hold in the driver
        return dataclasses.replace(self.cfg, base_url=base_url, model=model, api_key=None, sources={},
                                   batch_api=False, shared_limit=None, rpm=None, tpm=None,
                                   max_concurrency=self.batch_max)

    async def _send(self, batch: list[tuple[str, str, dict[str, Any], int, asyncio.Future]]) -> None:
        base_url, _, body, _, _ = batch[0]
        try:
            future = self._submit(self._worker_config(base_url, body.get("model") or ""), self.keys,
                                  [(path, b, tokens) for _, path, b, tokens, _ in batch])
            await _finished(future)
            out = await asyncio.to_thread(future.result)
        except BaseException as e:
            err = e if isinstance(e, DatagenError) else TeacherUnavailable(
                f"dask: a teacher-requests task failed on the cluster ({type(e).__name__}: {e})")
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            if not isinstance(e, Exception):
                raise
            return
        self.batches += 1
        self.per_worker[out["worker"]] += len(batch)
        for n, ((*_, fut), result) in enumerate(zip(batch, out["results"])):
            if fut.done():
                continue
            if "data" in result:
                # the batch's attempts and retries are counted once, with its first answer
                fut.set_result((result["data"], out["attempts"] if n == 0 else 0, out["retries"] if n == 0 else {}))
            elif result["error"] == "unavailable":
                fut.set_exception(TeacherUnavailable(result["message"]))
            elif result["error"] == "user":
                fut.set_exception(DatagenError(result["message"]))
            else:
                fut.set_exception(RuntimeError(f"dask worker {out['worker']}: {result['message']}"))

    def summary(self) -> dict[str, Any]:
        return {"role": self.role, "batches": self.batches, "batch_max": self.batch_max,
                "requests_per_worker": dict(sorted(self.per_worker.items()))}


def attach(run: dict[str, Any], teachers: list[tuple[Any, TeacherConfig | None, str]]) -> list[DaskRequests]:
    """For --runner dask: route every teacher role with its own endpoint through the cluster."""
    spec = RunnerSpec.from_run(run)
    if spec.kind != "dask":
        return []
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    ctx = FlowRunContext.get()
    if ctx is None or not isinstance(ctx.task_runner, DaskTaskRunner):
        raise DatagenError("runner dask: the flow is not running on a DaskTaskRunner (start it with "
                           "datagen.flows.dask_runner.with_runner)")
    workers = spec.workers or max(1, len(ctx.task_runner.client.scheduler_info().get("workers", {})))
    remotes = []
    for teacher, cfg, role in teachers:
        if cfg is None:
            continue
        remote = DaskRequests(cfg, role, batch_max=-(-cfg.max_concurrency // workers), max_batches=2 * workers)
        teacher.remote = remote
        remotes.append(remote)
    return remotes


def runner_section(run: dict[str, Any], remotes: list[DaskRequests]) -> dict[str, Any] | None:
    """The manifest's `runner` section: how the run was spread, and how many requests each worker sent."""
    spec = RunnerSpec.from_run(run)
    if spec.kind != "dask":
        return None
    address = spec.address
    if address:
        u = urlsplit(address)
        address = f"{u.scheme}://{u.hostname}:{u.port}"
    return {"kind": "dask", "address": address, "workers": spec.workers,
            "roles": [r.summary() for r in remotes]}
