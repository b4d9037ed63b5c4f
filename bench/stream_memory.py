"""Bounded memory: the streaming dedup + export path vs loading every record first, in the same run.

Run from the repository root:  python bench/stream_memory.py [--quick] [--n N] [--keep-files]

A JSONL file of N synthetic Alpaca records (default 1,000,000; --quick 100,000) is generated
deterministically in a temporary folder, with ~20% planted duplicates of an earlier record: exact copies,
copies that differ only in case/spacing/end punctuation (equal after normalisation), and near copies
(one output word replaced, a word appended or the last word dropped). The first N/10 lines are also
written to a second file, a prefix of the first.

Each measurement runs in a fresh subprocess that reads its own peak RSS (VmHWM in /proc/self/status), so
no run inherits another's high-water mark:

- ours:     resolve_source -> iter_records -> build_chain(["exact_dedup", {"minhash": {}}]) -> run_chain
            into a VersionWriter -> publish (alpaca, sharegpt, messages, records and rejected JSONL).
- baseline: the "load everything" way: every line into a list of dicts, exact dedup with a set of
            normalised texts, MinHash with the same MinHashDedup, then the four export files
            (alpaca, sharegpt, messages, records) written from the in-memory list.
- ours, exact only: the same streaming path with the exact step alone (no MinHash index), which shows
            what the stream itself costs once the per-kept-record indexes are taken away.
- file_sha256: the whole-file hash the curate flow puts in its manifest (datagen/flows/curate.py), on
            its own, because it reads the whole source into memory.

Both dedup paths apply the same rules, so kept counts, kept ids (in order) and the bytes of alpaca.jsonl
must be identical. Peak RSS still grows with N under streaming: MinHash keeps ~1.9 KB per kept record
(signature + band keys + id) and exact dedup a 16-byte digest + id; the records themselves are not held.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_SEED = 20240611
_DUP_SHARE = 0.20
_STOP = ("the a an of to in and or for with is are be on at by from as that this it "
         "you your can how what which when".split())


# --------------------------------------------------------------------------------------------- data


def _vocabulary(size: int = 20_000) -> list[str]:
    rng = random.Random(_SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(letters, k=rng.randint(3, 10))))
    # stop words make up roughly a quarter of the draws, so unrelated records share some shingles
    return sorted(words - set(_STOP)) + list(_STOP) * 250


def _original(o: int, pool: list[str]) -> dict[str, str]:
    """Original number `o`, regenerated from its number alone (so duplicates need no stored copy)."""
    rng = random.Random(o * 0x9E3779B1 + _SEED)
    choices = rng.choices
    instruction = " ".join(choices(pool, k=rng.randint(6, 16))).capitalize() + rng.choice(".?")
    inp = " ".join(choices(pool, k=rng.randint(5, 30))) if rng.random() < 0.4 else ""
    sentences = []
    for _ in range(rng.randint(3, 7)):
        sentences.append(" ".join(choices(pool, k=rng.randint(6, 14))).capitalize() + ".")
    return {"instruction": instruction, "input": inp, "output": " ".join(sentences)}


def _variant(row: dict[str, str], rng: random.Random, pool: list[str]) -> dict[str, str]:
    kind = rng.random()
    if kind < 0.25:   # byte-identical copy
        return dict(row)
    if kind < 0.50:   # same after normalisation: case, doubled spaces, end punctuation
        out = row["output"].replace(" ", "  ", 3).rstrip(".") + "!!"
        return {**row, "instruction": row["instruction"].upper(), "output": out}
    words = row["output"].split(" ")   # a near copy
    edit = rng.random()
    if edit < 0.4:
        words[rng.randrange(len(words))] = rng.choice(pool)
    elif edit < 0.7:
        words.append(rng.choice(pool) + ".")
    else:
        words.pop()
    return {**row, "output": " ".join(words)}


def generate(path: Path, prefix_path: Path, n: int, prefix_n: int) -> dict[str, float]:
    pool = _vocabulary()
    rng = random.Random(_SEED + 1)
    originals = 0
    size = 0
    with open(path, "w", encoding="utf-8") as f, open(prefix_path, "w", encoding="utf-8") as g:
        for i in range(n):
            if originals and rng.random() < _DUP_SHARE:
                row = _variant(_original(rng.randrange(originals), pool), rng, pool)
            else:
                row = _original(originals, pool)
                originals += 1
            line = json.dumps(row, ensure_ascii=False) + "\n"
            size += len(line)
            f.write(line)
            if i < prefix_n:
                g.write(line)
    return {"bytes": size, "originals": originals}


# -------------------------------------------------------------------------------------- measuring


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _child_ours(src_path: Path, work: Path, chain: list) -> dict:
    from datagen.methods.curate import build_chain, run_chain
    from datagen.store.sources import iter_records, resolve_source
    from datagen.store.versions import DatasetStore

    startup = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = work / "out"
    source = resolve_source(str(src_path), out)
    steps = build_chain(chain)
    store = DatasetStore(out, "bench")
    ids = hashlib.sha256()
    with store.open_version("bench-run") as writer:
        def keep(record):
            writer.add(record)
            ids.update(record.id.encode())
            ids.update(b"\n")

        totals = run_chain(iter_records(source), steps, keep, writer.reject)
        manifest = {"counts": dict(totals), "per_step": {s.name: dict(s.counts) for s in steps}}
        version = writer.publish(manifest, "bench {{version}}\n")
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    return {"n": totals["in"], "kept": totals["kept"], "kept_ids_sha256": ids.hexdigest(),
            "alpaca_sha256": _file_sha256(version / "alpaca.jsonl"), "files": dict(writer.counts),
            "per_step": manifest["per_step"], "wall_s": wall, "peak_kb": peak, "startup_kb": startup}


def _child_baseline(src_path: Path, work: Path) -> dict:
    from datagen.filters.exact_dedup import normalise
    from datagen.filters.minhash import MinHashDedup
    from datagen.records import Record, content_id
    from datagen.store.export import EXPORTERS

    startup = _status_kb("VmRSS")
    t0 = time.perf_counter()
    with open(src_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]

    def text(row: dict) -> str:
        return "\n".join(p for p in (row["instruction"], row.get("input", ""), row.get("output", "")) if p)

    def record(row: dict) -> Record:
        return Record(instruction=row["instruction"], input=row.get("input", ""), output=row.get("output", ""),
                      system=row.get("system", "") or "", method="seed")

    seen: set[str] = set()
    unique = []
    for row in rows:
        key = normalise(text(row))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    dedup = MinHashDedup()
    verdicts = dedup.check_and_add_many(
        (content_id(row["instruction"], row.get("input", ""), row.get("output", "")), text(row)) for row in unique)
    kept = [row for row, v in zip(unique, verdicts) if v.keep]

    dest = work / "baseline"
    dest.mkdir(parents=True, exist_ok=True)
    writers = {name: (open(dest / name, "w", encoding="utf-8"), fn) for name, fn in
               [*EXPORTERS.items(), ("records.jsonl", Record.to_dict)]}
    ids = hashlib.sha256()
    for row in kept:
        r = record(row)
        ids.update(r.id.encode())
        ids.update(b"\n")
        for fh, fn in writers.values():
            fh.write(json.dumps(fn(r), ensure_ascii=False))
            fh.write("\n")
    for fh, _ in writers.values():
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    return {"n": len(rows), "kept": len(kept), "kept_ids_sha256": ids.hexdigest(),
            "alpaca_sha256": _file_sha256(dest / "alpaca.jsonl"), "wall_s": wall, "peak_kb": peak,
            "startup_kb": startup}


def _child_sha256(src_path: Path) -> dict:
    from datagen.store.seeds import file_sha256

    startup = _status_kb("VmRSS")
    t0 = time.perf_counter()
    digest = file_sha256(src_path)
    wall = time.perf_counter() - t0
    return {"sha256": digest, "wall_s": wall, "peak_kb": _status_kb("VmHWM"), "startup_kb": startup}


def _run_child(mode: str, src: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--input", str(src), "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child '{mode}' failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 records instead of 1,000,000")
    ap.add_argument("--n", type=int, default=None, help="number of records (overrides --quick)")
    ap.add_argument("--keep-files", action="store_true", help="leave the temporary folder in place")
    ap.add_argument("--child", choices=["ours", "ours-exact", "baseline", "sha256"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        if args.child == "ours":
            res = _child_ours(args.input, args.work, ["exact_dedup", {"minhash": {}}])
        elif args.child == "ours-exact":
            res = _child_ours(args.input, args.work, ["exact_dedup"])
        elif args.child == "baseline":
            res = _child_baseline(args.input, args.work)
        else:
            res = _child_sha256(args.input)
        print(json.dumps(res))
        return

    n = args.n or (100_000 if args.quick else 1_000_000)
    small = max(1, n // 10)
    tmp = Path(tempfile.mkdtemp(prefix="datagen-stream-memory-"))
    try:
        t0 = time.perf_counter()
        data, prefix = tmp / "records.jsonl", tmp / "records_prefix.jsonl"
        gen = generate(data, prefix, n, small)
        print(f"generated {n:,} records ({gen['bytes'] / 1e6:.0f} MB, {gen['originals']:,} originals, "
              f"{gen['bytes'] / n:.0f} B/line) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        runs: list[tuple[str, int, dict]] = []
        for label, mode, src, size in [
            ("ours", "ours", prefix, small),
            ("baseline", "baseline", prefix, small),
            ("ours", "ours", data, n),
            ("baseline", "baseline", data, n),
            ("ours, exact only", "ours-exact", data, n),
        ]:
            print(f"running {label} on {size:,} ...", file=sys.stderr)
            res = _run_child(mode, src, tmp / f"{mode}-{size}")
            runs.append((label, size, res))
        sha = _run_child("sha256", data, tmp / "sha256")
    finally:
        if args.keep_files:
            print(f"files kept in {tmp}", file=sys.stderr)
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)

    ours_s, base_s, ours, base, exact = (r for _, _, r in runs)
    same_small = all(ours_s[k] == base_s[k] for k in ("kept", "kept_ids_sha256", "alpaca_sha256"))
    same_kept = ours["kept"] == base["kept"] and ours["kept_ids_sha256"] == base["kept_ids_sha256"]
    same_alpaca = ours["alpaca_sha256"] == base["alpaca_sha256"]

    def mb(kb: float) -> float:
        return kb / 1024

    print(f"{'run':<18} {'records':>10} {'kept':>10} {'wall s':>8} {'peak MB':>9} {'start MB':>9} "
          f"{'MB/1K rec':>10}")
    for label, size, r in runs:
        print(f"{label:<18} {size:>10,} {r['kept']:>10,} {r['wall_s']:>8.1f} {mb(r['peak_kb']):>9.1f} "
              f"{mb(r['startup_kb']):>9.1f} {mb(r['peak_kb']) / (size / 1000):>10.3f}")
    print(f"{'file_sha256':<18} {n:>10,} {'':>10} {sha['wall_s']:>8.1f} {mb(sha['peak_kb']):>9.1f} "
          f"{mb(sha['startup_kb']):>9.1f} {'':>10}  (flows/curate.py manifest hash of the source)")

    # growth from N/10 to N: per kept record for ours (its indexes grow with kept records), per input line
    # for the baseline (it holds every line)
    ours_growth = (ours["peak_kb"] - ours_s["peak_kb"]) * 1024 / max(1, ours["kept"] - ours_s["kept"])
    base_growth = (base["peak_kb"] - base_s["peak_kb"]) * 1024 / max(1, n - small)
    exact_net = (exact["peak_kb"] - exact["startup_kb"]) * 1024 / n
    print(f"ours peak growth N/10 -> N: {ours_growth:,.0f} B per extra kept record "
          f"(dedup indexes; source lines average {gen['bytes'] / n:.0f} B)")
    print(f"baseline peak growth N/10 -> N: {base_growth:,.0f} B per extra input record")
    print(f"ours with exact dedup only: {exact_net:,.0f} B per input record above startup")
    print(f"same kept count/ids at N/10: {same_small}; at N: {same_kept}; identical alpaca.jsonl: {same_alpaca}")

    print(json.dumps({
        "bench": "stream_memory", "n": n, "kept": ours["kept"],
        "ours_peak_mb": round(mb(ours["peak_kb"]), 1), "baseline_peak_mb": round(mb(base["peak_kb"]), 1),
        "ratio": round(ours["peak_kb"] / base["peak_kb"], 3),
        "ours_s": round(ours["wall_s"], 1), "baseline_s": round(base["wall_s"], 1),
        "ours_peak_mb_n10": round(mb(ours_s["peak_kb"]), 1),
        "baseline_peak_mb_n10": round(mb(base_s["peak_kb"]), 1),
        "ours_bytes_per_extra_kept": round(ours_growth), "baseline_bytes_per_extra_record": round(base_growth),
        "ours_exact_only_peak_mb": round(mb(exact["peak_kb"]), 1),
        "file_sha256_peak_mb": round(mb(sha["peak_kb"]), 1),
        "same_kept": same_kept and same_small, "same_alpaca": same_alpaca,
    }))


if __name__ == "__main__":
    main()
