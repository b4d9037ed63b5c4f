"""Translation as a stage and as its own flow.

* `translate_stage(ctx, records, params)`: the translator role translates every record into each
  language (datagen.methods.translate); the stage returns the records it was given followed by the
  translations that passed, so a version holds the originals and their translations side by side.
* `translate_outcome(ctx, outcome)`: the harness calls it after any recipe's stages when the run has a
  `translate` section (`--translate zh,fr` on a recipe, or a pipeline's last `translate` stage).
* `translate_flow(run)`: `datagen translate <dataset>[@vN] --to zh,fr` — the source version's records
  as they are, then the translation, published through the same harness as a new version whose parent
  is the source version.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from datagen.filters.language import base_language, detect_language
from datagen.flows.harness import Outcome, RunContext, run_recipe
from datagen.flows.stages import StageResult, ancestors_of
from datagen.methods import translate as tr
from datagen.records import Record, UniqueIds
from datagen.store.seeds import file_sha256


@task(name="translate-pass", cache_policy=NONE)
async def translate_pass(state: tr.TranslateState, translator: Any) -> int:
    await state.run(translator)
    get_run_logger().info("translate: %d of %d translations passed (%s)", len(state.translations),
                          len(state.inputs) * len(state.params.languages), ", ".join(state.params.languages))
    return len(state.translations)


def language_mix(records: list[Record]) -> dict[str, int]:
    """Records per language: a translation's verified target, else the record's `lang`, else what
    langdetect says of its text (`unknown` when too short to tell)."""
    mix: Counter = Counter()
    for r in records:
        if r.method == "translate":
            verified = r.scores.get("translate", {}).get("detected") not in (None, "unknown")
            mix[r.lang if verified else f"{r.lang} (unverified)"] += 1
        elif r.lang:
            mix[r.lang] += 1
        else:
            text = "\n\n".join(t for _, t in tr.texts_of(r))
            guess = detect_language(text)
            mix[base_language(guess.lang) if guess.known else "unknown"] += 1
    return dict(sorted(mix.items(), key=lambda kv: (-kv[1], kv[0])))


async def translate_stage(ctx: RunContext, records: list[Record], params: dict[str, Any]) -> StageResult:
    p = tr.TranslateParams(**params)
    templates = tr.TranslateTemplates.load(p.prompts_dir)
    state = tr.TranslateState(records, p, templates)
    ctx.progress.stage = f"translate ({', '.join(p.languages)})"
    t0 = time.monotonic()
    await translate_pass(state, ctx.translator)
    ctx.timed("translate", t0)
    ids = UniqueIds()
    out = [ids.assign(r) for r in [*records, *state.translations]]
    summary = state.summary()
    summary["language_mix"] = language_mix(out)
    counts = {"inputs": len(records), "translations": len(state.translations), "records": len(out),
              **{k: v for k, v in sorted(state.counts.items())}}
    return StageResult(out, state.rejected, counts, templates=templates.hashes(),
                       sampling={"translate": tr.capped(tr.TRANSLATE_PARAMS, p.max_tokens),
                                 "seed": "per request, from --seed, source id, language and field"},
                       extra={"translate": summary}, budget_stop=state.budget_stop)


async def translate_outcome(ctx: RunContext, outcome: Outcome) -> Outcome:
    """`outcome` with its records' translations added: rejects, counts, templates and the manifest's
    `translate` section folded in; the earlier stages' records stay as they were."""
    made = await translate_stage(ctx, outcome.records, ctx.run["translate"])
    counts = dict(outcome.counts)
    counts["per_stage"] = {**counts.get("per_stage", {}), "translate": made.counts}
    counts["records"] = len(made.records)
    counts["instructions"] = len({r.instruction for r in made.records})
    counts["rejected"] = counts.get("rejected", 0) + len(made.rejected)
    counts["translations"] = made.counts["translations"]
    budget_stop = outcome.budget_stop or made.budget_stop
    return Outcome(records=made.records, rejected=[*outcome.rejected, *made.rejected], counts=counts,
                   source=outcome.source, templates={**outcome.templates, **made.templates},
                   sampling={**outcome.sampling, "translate": made.sampling}, extra={**outcome.extra, **made.extra},
                   parent=outcome.parent, partial=outcome.partial or ("budget" if made.budget_stop else None),
                   partial_reason=outcome.partial_reason or made.budget_stop, budget_stop=budget_stop,
                   stages=[*outcome.stages, "translate"],
                   ancestors=ancestors_of(made.records, [*outcome.ancestors, *outcome.records]))


@flow(name="translate", log_prints=False, validate_parameters=False)
async def translate_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: input (the source version's folder), name, out, run_id, cache, translate (TranslateParams),
    teacher, translator."""
    return await run_recipe(run, "translate", source_records)


async def source_records(ctx: RunContext) -> Outcome:
    """The source version's records unchanged; the harness then translates them (run["translate"])."""
    from datagen.store.sources import load_instructions

    run = ctx.run
    records, source = load_instructions(run["input"], run["out"], flag="dataset")
    ctx.log.info("translate: %d records from %s into %s, translator %s", len(records), source.parent or source.path,
                 ", ".join(run["translate"]["languages"]), ctx.translator.model)
    return Outcome(records=records, rejected=[], counts={"inputs": len(records), "records": len(records),
                                                         "instructions": len({r.instruction for r in records}),
                                                         "rejected": 0},
                   source={"path": str(source.path), "sha256": file_sha256(source.path), "count": len(records)},
                   parent=source.parent, stages=["source"])
