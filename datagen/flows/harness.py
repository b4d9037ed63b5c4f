"""The one run harness every recipe's flow uses: claim the run, start the teacher roles, cache and
budget, then the recipe's own stages, then manifest and publish — or, on failure, discard the
working state (the cache is what resumes a run).

A recipe is an async function `body(ctx) -> Outcome`: it only wires its method's stages (as Prefect
tasks) over `ctx.teacher` / `ctx.judge`; everything a version must say about how it was made is
assembled here, once, so Self-Instruct, Evol-Instruct, distillation and a pipeline of them publish
the same manifest shape, count usage per role and fail the same way.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NONE

from datagen import progress
from datagen.crashpoints import crash_point
from datagen.errors import DatagenError
from datagen.flows.artifacts import apublish_artifacts
from datagen.flows.dask_runner import attach as attach_remotes, runner_section
from datagen.records import Record
from datagen.store.manifest import build_manifest, dataset_card
from datagen.store.versions import DatasetStore, StaleLatest
from datagen.teacher.budget import Budget, Prices
from datagen.teacher.cache import ResponseCache
from datagen.teacher.client import Teacher
from datagen.teacher.config import TeacherConfig, resolve_role_config, resolve_teacher_config
from datagen.teacher.embedded import EmbeddedTeacher


@dataclass
class RunContext:
    """What a recipe's stages get: the run's parameters, its store, and the teacher roles."""
    run: dict[str, Any]
    store: DatasetStore
    work: Path
    teacher: Teacher
    judge: Any                      # a Teacher of its own, or teacher.as_role("judge")
    config: TeacherConfig
    judge_config: TeacherConfig | None
    budget: Budget | None
    translator: Any = None          # a Teacher of its own, or teacher.as_role("translator")
    translator_config: TeacherConfig | None = None
    earlier: Earlier | None = None  # the version this run extends (run["extend"]), None otherwise
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def log(self):
        return get_run_logger()

    @property
    def progress(self) -> progress.Progress:
        return progress.current()

    def timed(self, stage: str, t0: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.monotonic() - t0


@dataclass
class Earlier:
    """The published version a run continues (`--extend`, or a scheduled night): its records (kept in
    the new version ahead of the new ones), its lineage, and the version the run is about to make."""
    label: str                                     # NAME@vN: the new version's parent
    dir: Path
    records: list[Record]
    ancestors: list[Record]
    next_version: int

    @property
    def instructions(self) -> list[str]:
        return list(dict.fromkeys(r.instruction for r in self.records))

    def seed(self, base: int) -> int:
        """This night's sampling seed: from the base --seed and the version about to be made, so a
        rerun of the same night replays its cache and the next night asks new questions."""
        from datagen.methods.evol import derived_seed
        return derived_seed(base, "extend", self.next_version)


def load_earlier(store: DatasetStore, recipe: str, variant: str | None = None) -> Earlier | None:
    """LATEST of the dataset the run publishes into, read whole (None: nothing published yet). It must
    have been made by the same recipe and variant: a run grows its own kind of data only."""
    latest = store.latest()
    if latest is None:
        return None
    from datagen.runspec import generated_by

    vdir = store.resolve(latest)
    *was, chain = generated_by(store.root, f"{store.name}@{latest}")
    if tuple(was) != (recipe, variant):
        raise DatagenError(f"{' <- '.join(chain)} was made by {was[0]}{f' ({was[1]})' if was[1] else ''}, not "
                           f"{recipe}{f' ({variant})' if variant else ''}: cannot extend it; publish under another "
                           "name or run with extend off")

    def rows(name: str) -> list[Record]:
        path = vdir / name
        if not path.exists():
            return []
        out = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append(Record.from_dict(json.loads(line)))
                except (ValueError, TypeError, KeyError) as e:
                    raise DatagenError(f"{path}:{n}: not a datagen record ({e}); cannot extend {store.name}@{latest}") from None
        return out

    if not (vdir / "records.jsonl").is_file():
        raise DatagenError(f"{vdir / 'records.jsonl'}: missing; cannot extend {store.name}@{latest}")
    return Earlier(label=f"{store.name}@{latest}", dir=vdir, records=rows("records.jsonl"),
                   ancestors=rows("lineage.jsonl"), next_version=int(latest[1:]) + 1)


# Recipes whose stages continue a published dataset (they read ctx.earlier).
EXTENDS = {"self-instruct"}


@dataclass
class Outcome:
    """What a recipe made: the records to publish and everything the manifest says about them."""
    records: list[Record]
    rejected: list[dict[str, Any]]
    counts: dict[str, Any]
    source: dict[str, Any]                         # path, sha256, count of the seeds / input
    templates: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    partial: str | None = None                     # None, or why the run stopped before its target
    partial_reason: str = ""
    budget_stop: str = ""                          # set when the budget refused a request
    stages: list[str] = field(default_factory=list)  # the method's stages, for the card and the summary
    ancestors: list[Record] = field(default_factory=list)  # unpublished records the published descend from


@task(name="publish", cache_policy=NONE)
def publish(store: DatasetStore, run_id: str, records: list[Record], rejected: list[dict[str, Any]],
            manifest: dict[str, Any], ancestors: list[Record] | None = None, if_latest: str | None = None) -> str:
    path = store.publish(run_id, records, rejected, manifest, dataset_card(store.name, manifest), ancestors or [],
                         if_latest=if_latest)
    get_run_logger().info("published %s (%d records)", path, len(records))
    return str(path)


def _budget(run: dict[str, Any], cfg: TeacherConfig) -> Budget | None:
    limits = run.get("budget") or {}
    if limits.get("max_cost_usd") is None and limits.get("max_total_tokens") is None:
        return None
    budget = Budget(max_cost_usd=limits.get("max_cost_usd"), max_total_tokens=limits.get("max_total_tokens"),
                    prices=Prices(run.get("prices") or {}), model=cfg.model or "")
    if limits.get("max_cost_usd") is not None and not budget.cost_enforced:
        get_run_logger().warning("no price configured for model %r: --max-cost cannot be enforced, only token "
                                 "limits", cfg.model)
    return budget


def role_configs(run: dict[str, Any]) -> tuple[TeacherConfig, TeacherConfig | None]:
    """The teacher's settings and the judge's own (None: the judge is the teacher's endpoint)."""
    cfg = resolve_teacher_config(run.get("teacher", {}), run.get("teacher_yaml"))
    judge = resolve_role_config("judge", run.get("judge", {}), run.get("judge_yaml"), cfg)
    return cfg, judge


async def run_recipe(run: dict[str, Any], recipe: str, body: Callable[[RunContext], Awaitable[Outcome]]) -> dict[str, Any]:
    """Claim the run, run `body` with the teacher roles open, publish its Outcome; on any failure
    release the claim and discard the working folder (unless the error names a file in it)."""
    log = get_run_logger()
    started = time.monotonic()
    store = DatasetStore(run["out"], run["name"])
    cleaned = store.recover()
    if cleaned:
        log.info("cleaned the working state of %d interrupted or failed run(s): %s", len(cleaned), ", ".join(cleaned))
    claim = store.claim_run(run["run_id"])
    try:
        return await _run(run, recipe, body, store, claim, started)
    except BaseException as e:
        claim.release()
        store.discard_run(run["run_id"], unless_named_in=str(e))
        raise


async def _run(run: dict[str, Any], recipe: str, body: Callable[[RunContext], Awaitable[Outcome]],
               store: DatasetStore, claim: Any, started: float) -> dict[str, Any]:
    crash_point("run.start")
    earlier = None
    if run.get("extend"):
        if recipe in EXTENDS:
            earlier = load_earlier(store, recipe, run.get("variant"))
        else:
            get_run_logger().info("%s does not continue a dataset: extend changes nothing", recipe)
    cfg, judge_cfg = role_configs(run)
    cache = ResponseCache(run["cache"])
    work = store.work_dir(run["run_id"])
    embedded = EmbeddedTeacher(log_path=work / "llama-server.log") if cfg.embedded else None
    budget = _budget(run, cfg)
    prices = Prices(run.get("prices") or {})
    async with Teacher(cfg, cache, embedded=embedded, budget=budget) as teacher:
        await _share(teacher, cfg)
        judge_own = None
        if judge_cfg is not None:
            judge_embedded = EmbeddedTeacher(log_path=work / "llama-server-judge.log") if judge_cfg.embedded else None
            judge_own = Teacher(judge_cfg, cache, role="judge", embedded=judge_embedded, budget=budget)
            await _share(judge_own, judge_cfg)
        judge = judge_own or teacher.as_role("judge")
        tr_cfg = (resolve_role_config("translator", run.get("translator", {}), run.get("translator_yaml"), cfg)
                  if run.get("translate") else None)
        tr_own = None
        if tr_cfg is not None:
            tr_embedded = EmbeddedTeacher(log_path=work / "llama-server-translator.log") if tr_cfg.embedded else None
            tr_own = Teacher(tr_cfg, cache, role="translator", embedded=tr_embedded, budget=budget)
            await _share(tr_own, tr_cfg)
        translator = tr_own or teacher.as_role("translator")
        # --runner dask: each endpoint's requests go to the cluster's workers; all else stays here
        remotes = attach_remotes(run, [(teacher, cfg, "teacher"), (judge_own, judge_cfg, "judge"),
                                       (tr_own, tr_cfg, "translator")])
        try:
            ctx = RunContext(run=run, store=store, work=work, teacher=teacher, judge=judge, config=cfg,
                             judge_config=judge_cfg, budget=budget, translator=translator, translator_config=tr_cfg,
                             earlier=earlier)
            progress.current().usages = [teacher.usage, judge.usage, translator.usage]
            progress.current().concurrency = teacher.concurrency
            outcome = await body(ctx)
            if run.get("translate") and outcome.records:
                from datagen.flows.translate import translate_outcome
                outcome = await translate_outcome(ctx, outcome)
        finally:
            if judge_own is not None:
                await judge_own.aclose()
            if tr_own is not None:
                await tr_own.aclose()
        model_file = embedded.model_path.name if embedded is not None and embedded.model_path is not None else None
        usages = []
        for role in (teacher, judge, translator):
            u = role.usage
            u.cost_usd = prices.cost(role.model, u.prompt_tokens, u.completion_tokens)
            if role is teacher or u.requests or u.cache_hits:
                usages.append(u.to_dict())
        model, judge_model, translator_model = teacher.model, judge.model, translator.model
    crash_point("filter.done")
    timings = ctx.timings
    timings["total_before_publish"] = time.monotonic() - started
    if outcome.partial == "budget" and not outcome.records:
        raise DatagenError(budget.too_small_message() if budget is not None and budget.refused else
                           f"{outcome.budget_stop or 'budget'}: the budget ran out before one record was made; "
                           "nothing was published")
    if not outcome.records:
        # Nothing to publish, but every dropped candidate is still kept with its reason: the error names
        # the file, so the working folder that holds it is not discarded.
        kept = store.work_dir(run["run_id"]) / "rejected.jsonl"
        with open(kept, "w", encoding="utf-8") as f:
            for row in outcome.rejected:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        raise DatagenError(f"{recipe}: no record survived ({_reasons(outcome.rejected)}); nothing was published; "
                           f"the {len(outcome.rejected):,} rejected candidates and their reasons are in {kept}")
    log = get_run_logger()
    if outcome.partial == "budget":
        log.warning("budget reached (%s): publishing the %d records made so far", outcome.budget_stop,
                    len(outcome.records))
    elif outcome.partial:
        log.warning("stopped early, %s", outcome.partial_reason or outcome.partial)
    teacher_info = {**cfg.public(), "model": model, "model_file": model_file, "sampling": outcome.sampling}
    extra = dict(outcome.extra)
    if earlier is not None:
        _check_still_latest(store, earlier)
        extra["extend"] = {**extra.get("extend", {}), "parent": earlier.label,
                           "earlier_records": len(earlier.records), "new_records": len(outcome.records)}
        outcome.counts = {**outcome.counts, "records": len(earlier.records) + len(outcome.records),
                          "earlier_records": len(earlier.records), "new_records": len(outcome.records)}
        outcome.records = [*earlier.records, *outcome.records]
        outcome.ancestors = [*earlier.ancestors, *outcome.ancestors]
        outcome.parent = outcome.parent or earlier.label
    extra["judge"] = ({**judge_cfg.public(), "model": judge_model} if judge_cfg is not None
                      else {"same_as": "teacher", "model": judge_model})
    if run.get("translate"):
        extra["translator"] = ({**tr_cfg.public(), "model": translator_model} if tr_cfg is not None
                               else {"same_as": "teacher", "model": translator_model})
    extra["budget"] = budget.to_dict() if budget else None
    extra["partial_reason"] = outcome.partial_reason or None
    extra["stages"] = outcome.stages
    if (spread := runner_section(run, remotes)) is not None:
        extra["runner"] = spread
    manifest = build_manifest(
        recipe=recipe, run_id=run["run_id"],
        config={k: v for k, v in run.items() if k not in ("teacher", "judge")}
        | {"teacher_flags": run.get("teacher", {}), "judge_flags": run.get("judge", {})},
        seeds=outcome.source, templates=outcome.templates, teacher=teacher_info, counts=outcome.counts,
        usage=usages, timings=timings, rejected=outcome.rejected, partial=outcome.partial,
        parent=outcome.parent, extra=extra)
    prog = progress.current()
    prog.stage = "publish"
    path = publish(store, run["run_id"], outcome.records, outcome.rejected, manifest, outcome.ancestors,
                   if_latest=earlier.dir.name if earlier is not None else None)
    cache.close()
    claim.release()
    crash_point("flow.done")
    prog.stage = "done"
    published = json.loads((Path(path) / "manifest.json").read_text())
    await apublish_artifacts(store.name, path, published)  # the Prefect UI's view of this version; never fails the run
    return {"path": path, "manifest": published, "flow_run_id": str(runtime.flow_run.id)}


async def _share(teacher: Teacher, cfg: TeacherConfig) -> None:
    """With `shared_limit`, every request of this endpoint holds a slot of a Prefect global
    concurrency limit shared with other runs (flows/shared_limit.py); checked before anything starts."""
    if cfg.shared_limit is not None and cfg.base_url is not None:
        from datagen.flows.shared_limit import SharedLimit
        teacher.shared = SharedLimit(cfg.base_url, cfg.shared_limit)
        await teacher.prepare()


def _check_still_latest(store: DatasetStore, earlier: Earlier) -> None:
    """A version published by another run since this one read LATEST would be left out of the new
    version: refuse early rather than publish a version that drops it (publish checks it once more,
    under the store's lock, for one that lands in between)."""
    latest = store.latest()
    if latest != earlier.dir.name:
        raise StaleLatest(store.name, earlier.dir.name, latest)


def _reasons(rejected: list[dict[str, Any]]) -> str:
    from collections import Counter
    c = Counter(f"{r['stage']}: {r['reason']}" for r in rejected)
    return ", ".join(f"{k} {n}" for k, n in c.most_common(6)) or "nothing was made"
