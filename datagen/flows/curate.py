"""`datagen dedup` / `datagen filter` as a Prefect flow: one filter pass, then publish.

The pass streams the source through the chain straight into the new version's staging files; a
published version names its parent when the source was a version.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NONE

from datagen import progress
from datagen.errors import DatagenError
from datagen.flows.artifacts import publish_artifacts
from datagen.methods.curate import Step, build_chain, run_chain
from datagen.store.manifest import build_manifest, dataset_card
from datagen.store.seeds import file_sha256
from datagen.store.sources import Source, iter_records
from datagen.store.versions import DatasetStore, VersionWriter


@task(name="filter-pass", cache_policy=NONE)
def filter_pass(source: Source, steps: list[Step], writer: VersionWriter) -> dict[str, int]:
    prog = progress.current()
    prog.stage = "filter"

    def keep(record):
        writer.add(record)
        prog.accepted += 1

    totals = run_chain(iter_records(source), steps, keep, writer.reject)
    get_run_logger().info("filter pass: %d in, %d kept, %d rejected", totals["in"], totals["kept"], totals["rejected"])
    return dict(totals)


@task(name="publish", cache_policy=NONE)
def publish(writer: VersionWriter, manifest: dict[str, Any], name: str) -> str:
    path = writer.publish(manifest, dataset_card(name, manifest))
    get_run_logger().info("published %s", path)
    return str(path)


@flow(name="curate", log_prints=False, validate_parameters=False)
def curate_flow(run: dict[str, Any]) -> dict[str, Any]:
    """`run`: source (Source fields), name, out, run_id, recipe, chain (list of steps), chain_base."""
    started = time.monotonic()
    source = Source(**{k: (Path(v) if k in ("path", "out") and v else v) for k, v in run["source"].items()})
    steps = build_chain(run["chain"], Path(run["chain_base"]) if run.get("chain_base") else None,
                        where=run.get("chain_where", "config"))
    store = DatasetStore(run["out"], run["name"])
    store.recover()
    with store.claim_run(run["run_id"]), store.open_version(run["run_id"]) as writer:
        totals = filter_pass(source, steps, writer)
        rejected_by_stage = {s.name: {k: v for k, v in sorted(s.counts.items()) if k != "kept"} for s in steps}
        if totals.get("empty_record"):
            rejected_by_stage = {"read": {"empty_record": totals["empty_record"]}, **rejected_by_stage}
        if totals["in"] and not totals["kept"]:
            # An empty version would become LATEST and hand a trainer nothing; say why instead.
            why = ", ".join(f"{stage}: {reason} {n}" for stage, reasons in rejected_by_stage.items()
                            for reason, n in reasons.items())
            raise DatagenError(f"{run['recipe']}: every one of the {totals['in']:,} records was dropped ({why}); "
                               "nothing was published; loosen the chain and run again")
        counts = {"in": totals["in"], "records": totals["kept"], "instructions": totals["kept"],
                  "rejected": totals["rejected"],
                  "per_step": {s.name: dict(sorted(s.counts.items())) for s in steps}}
        manifest = build_manifest(
            recipe=run["recipe"], run_id=run["run_id"], config={k: v for k, v in run.items() if k != "source"},
            seeds={"path": str(source.path), "sha256": file_sha256(source.path), "count": totals["in"]},
            templates={}, teacher={}, counts=counts, usage=[], timings={"total": time.monotonic() - started},
            rejected=[], parent=source.parent,
            extra={"filters": [{"step": s.name, **s.config} for s in steps]},
        )
        manifest["rejected"] = {k: v for k, v in rejected_by_stage.items() if v}
        path = publish(writer, manifest, store.name)
    published = json.loads((Path(path) / "manifest.json").read_text())
    publish_artifacts(store.name, path, published)  # the Prefect UI's view of this version; never fails the run
    return {"path": path, "manifest": published, "flow_run_id": str(runtime.flow_run.id)}
