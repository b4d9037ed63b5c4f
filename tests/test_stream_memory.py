"""Bounded memory: the curation path streams records from the source file to the version's files.

Python-heap peaks are measured with tracemalloc (deterministic for a fixed input, unlike RSS), in the same
test, against the cost of simply holding the same records as a list. The only thing that should grow with
the input is the exact-dedup index (a 16-byte digest and an id per kept record), plus one chunk in flight.
bench/stream_memory.py measures peak RSS at a million records.
"""
from __future__ import annotations

import gc
import json
import random
import tracemalloc

from datagen.methods.curate import build_chain, run_chain
from datagen.store.sources import Source, iter_records
from datagen.store.versions import DatasetStore

N = 50_000
DUP_EVERY = 2  # every other line repeats an earlier one: a dedup stream that rejects as much as it keeps


def _write_source(path) -> int:
    rng = random.Random(7)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(5000)]
    lines: list[str] = []
    dups = 0
    with open(path, "w", encoding="utf-8") as f:
        for i in range(N):
            if i and i % DUP_EVERY == 0:
                line = lines[rng.randrange(len(lines))]
                dups += 1
            else:
                row = {"instruction": " ".join(rng.choices(vocab, k=rng.randint(6, 14))) + f" #{i}?",
                       "input": " ".join(rng.choices(vocab, k=10)) if i % 3 == 0 else "",
                       "output": " ".join(rng.choices(vocab, k=rng.randint(100, 180))) + "."}
                line = json.dumps(row) + "\n"
                if len(lines) < 1000:
                    lines.append(line)
            f.write(line)
    return dups


def test_streaming_exact_dedup_into_a_version_holds_no_records(tmp_path):
    src = tmp_path / "in.jsonl"
    dups = _write_source(src)
    source = Source(path=src)
    store = DatasetStore(tmp_path / "out", "mem")

    gc.collect()
    tracemalloc.start()
    try:
        # what holding every record costs: the same records, materialised as a list
        before = tracemalloc.get_traced_memory()[0]
        records = list(iter_records(source))
        held = tracemalloc.get_traced_memory()[1] - before
        assert len(records) == N
        del records
        gc.collect()

        # ours: stream through the chain into the version's files
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        steps = build_chain(["exact_dedup"])
        with store.open_version("stream-run") as writer:
            totals = run_chain(iter_records(source), steps, writer.add, writer.reject)
            version = writer.publish({"counts": dict(totals)}, "memory test {{version}}\n")
        ours = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()

    assert totals["in"] == N and totals["rejected"] == dups and totals["kept"] == N - dups
    assert writer.counts["alpaca.jsonl"] == writer.counts["records.jsonl"] == N - dups
    assert writer.counts["rejected.jsonl"] == dups
    with open(version / "alpaca.jsonl", encoding="utf-8") as f:
        assert sum(1 for _ in f) == N - dups
    assert ours < held / 3, (f"streaming peak {ours / 2**20:.1f} MiB is not well below "
                             f"the {held / 2**20:.1f} MiB that holding {N:,} records takes")
