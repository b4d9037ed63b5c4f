"""Scale-out on Dask: requests/s and records/s of whole CLI runs, single process vs 1, 2 and 4 Dask workers.

Run from the repository root:  .venv/bin/python bench/scale_out.py [--quick] [--json out.json]

For each configuration -- `--runner local` (the single process, the baseline), then `--runner dask
--dask-workers 1`, 2 and 4 (a LocalCluster the CLI starts for its run) -- the bench runs the same whole CLI
command, each with its own fresh out folder and cache (nothing is cached), one after the other, in this
one bench process:

- distill:       `datagen run distill --input INSTR.txt --judge off --max-concurrency C ...`, INSTR.txt being
                 --instructions (default 240) distinct instructions written to a temp folder: independent
                 requests, so this is the clean throughput figure;
- self-instruct: `datagen run self-instruct --seeds seeds/175.jsonl -n N --schedule overlapped ...`
                 (--si-n, default 60; 0 skips it): rounds that depend on earlier answers.

Every run gets the same --max-concurrency C (--concurrency, default 32) and seed, and points at one
Prefect server started once for the whole bench (bench/recipe_throughput.py's PrefectServer; the Dask
workers report their `teacher-requests` task runs to it). The teacher is the loopback stub of
bench/recipe_throughput.py (tests/openai_stub.py answering with tests/si_responder.py's shapes, wider
bootstrap answers) in a process of its own, started fresh for every run, answering every generation
request after a fixed --latency (default 0.5 s); it counts requests in flight (peak, and the mean over
the generation period, sampled every 50 ms).

Per run it reports: wall s (the CLI process, interpreter start to exit); start s (CLI start .. the first
generation request reaching the stub: imports, flow start, the LocalCluster start-up); teach s (first
request .. last answer at the stub); tail s (last answer .. exit: publish, cluster shutdown); teacher
requests (the manifest's usage); requests/s and records/s over the wall time, and requests/s over teach s;
the ratio of each to the single process; the spread of the manifest's runner.roles[].requests_per_worker;
and CPU seconds per process group, from /proc via psutil sampled every 0.2 s (approximate: a process's last
0.2 s can be missed): the driver (the CLI process), its Dask processes (nannies and workers), the Prefect
server, the stub; and the machine's busy share of its cores over the run. Every process the bench starts
(the server, the stubs, the CLI runs and anything they leave running) is stopped by PID at the end, also on
an error or Ctrl-C.

Numbers depend heavily on the machine: on a 2-core box the driver, 1-4 Dask workers and their nannies,
the Prefect server and the stub all share the two cores, and the box may be running other work.

Measured 2026-12-02 (`--repeat 2`, defaults otherwise: latency 0.5 s, C=32, distill 240 instructions,
self-instruct -n 60; 211 s in all) on a 2-core machine shared with other sessions' work (1-min load average
2.0-2.8 during the runs; an earlier run at load 4-5 gave the same shape, up to 1.5x slower for dask 2 and 4).
Medians of 2 runs; x = ratio to the single process:

recipe        config  wall s start s teach s tail s  req  req/s    x  rec/s    x  req/s teach    x  flight  per worker
distill       single     7.4     2.6     4.1    0.7  240   32.6 1.00   32.6 1.00         59.0 1.00  31.5/32  -
distill       dask 1    11.1     4.3     5.6    1.2  240   21.7 0.67   21.7 0.67         43.1 0.73  21.3/32  240
distill       dask 2    14.4     4.2     8.1    2.0  240   16.7 0.51   16.7 0.51         29.5 0.50  14.7/25  151/89
distill       dask 4    20.1     9.0     8.4    2.8  240   12.3 0.38   12.3 0.38         28.9 0.49  14.3/31  77/72/70/21
self-instruct single     6.1     2.1     3.3    0.8  166   27.1 1.00   19.8 1.00         50.5 1.00  28.8/32  -
self-instruct dask 1    11.0     4.5     5.1    1.4  166   15.1 0.56   11.0 0.56         32.3 0.64  16.1/32  166
self-instruct dask 2    12.8     5.4     6.1    1.4  166   13.0 0.48    9.5 0.48         27.5 0.55  13.7/25  103/63
self-instruct dask 4    14.9     6.4     6.5    2.0  166   11.1 0.41    8.1 0.41         25.6 0.51  13.3/31  52/47/40/27

recipe        config  CPU s: driver dask procs prefect stub | start teach tail | ms/req teach  batches  task run s  in task
distill       single            2.7        0.0     0.7  0.1 |   2.3   0.5  0.7 |          2.2        -           -     -
distill       dask 1            3.6        3.5     0.8  0.1 |   4.2   2.7  1.2 |         11.2        8       0.551   79%
distill       dask 2            4.3        7.9     1.4  0.2 |   5.8   5.9  1.9 |         24.8       21       0.570   74%
distill       dask 4            5.1       15.6     2.2  0.2 |  10.5   9.6  3.0 |         40.1     37.5       0.598   67%
(self-instruct: the same pattern, 3.3 / 13.3 / 28.5 / 49.4 ms CPU per request during teach.)

Also measured: distill 960 instructions (load 3-6): single 43.8 req/s, dask 1 26.3 (0.60x), dask 4 14.5 (0.33x);
ms CPU per request during teach 1.6 / 9.8 / 40.9; 30 and 136 batches. Latency 2 s, C=128, 640 instructions:
single 39.4 req/s (127 of 128 in flight), dask 1 18.7 (0.47x), dask 2 19.0 (0.48x), dask 4 12.0 (0.30x); dask 1
ran 10 batches of 64 requests one after the other (52 in flight on average).

What it says (2026-12-02; prefect 3.8.8, prefect-dask 0.3.7, distributed 2026.8.0):
on one 2-core box, --runner dask is slower than the single process at every worker count, and more workers is
slower still. The single process keeps the window full (31.5 of 32 in flight): the teacher's latency bounds it
(C / latency = 64 req/s). With Dask the costs that grow with workers are (1) start-up: a nanny and a worker
process per worker, each importing distributed, Prefect and datagen (+1.7 to +6.4 s before the first request,
~4 s CPU per worker); (2) per batch: each `teacher-requests` task run costs ~0.2-0.3 s CPU across the processes
(py-spy on a dask-1 run, not part of this bench: on the worker, Prefect's task engine rebuilds its settings and
two API clients, each with a new SSL context, for every task run, and datagen opens a new HTTP session; in the
driver, Prefect serialises the settings context for every submit), and the number of batches grows with workers
(batch_max = C / workers, and batches go out only part full: 8, 21, 37.5 batches for 240 requests); (3) a worker
runs one batch at a time (one thread, held for the batch's slowest request), so requests in flight are at most
workers x batch fill, not C. The bottleneck moves from the teacher (single) to the serial batch round trip
(dask 1: 79% of the time inside task runs) and then to the two cores (dask 2-4: machine busy 76-100%). The
Prefect API server (0.7-2.6 s CPU per run) and the stub (0.1-0.2 s) are not the limit here.

Then the runner changed: LocalCluster workers got 2 threads, and the driver keeps at most two batches per
worker in flight (one on the wire, one starting; requests arriving meanwhile merge into the next). Same day,
quieter machine (load 0.5-1.2), `--quick` (distill, 160 instructions): single 30 req/s; dask 1 0.67x, dask 2
0.58-0.62x, dask 4 0.46x (ms CPU per request during teach 2.4 / 10 / 25-28 / 42); `--workers 2` with
self-instruct -n 60: 0.54x (was 0.48x). Requests in flight at the stub rose from ~14 to ~19-20 of 32 with
2-4 workers; the per-batch CPU, and the start-up, still decide on one 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe_throughput as rt  # noqa: E402  (the stub and the Prefect server, shared with that bench)

REPO = rt.REPO
SAMPLE_CPU_S = 0.2


# --------------------------------------------------------------------------- inputs

def write_instructions(path: Path, n: int) -> None:
    """n distinct one-line instructions (topic x task x angle, in a fixed order)."""
    topics = sorted(set(rt.VOCAB_SOURCES.split()))
    angles = ("briefly", "for a beginner", "with an example", "in three steps", "as a list", "for a child")
    lines = []
    for i in range(n):
        verb = rt.BOOT_VERBS[i % len(rt.BOOT_VERBS)]
        a, b = topics[i % len(topics)], topics[(7 * i + 3) % len(topics)]
        lines.append(f"{verb} {a} and {b} {angles[(i // len(topics)) % len(angles)]} (item {i}).")
    assert len(set(lines)) == n
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- processes

class Stub(rt.Stub):
    """recipe_throughput's measuring stub at a fixed --latency, in a process (and session) of its own;
    its stats() and stop() as there."""

    def __init__(self, latency: float):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--latency", str(latency)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
        ready = self.proc.stdout.readline().split()
        if ready[:1] != ["READY"]:
            self.stop()
            raise RuntimeError(f"stub did not start: {' '.join(ready)!r}")
        self.base_url = ready[1]
        self.root = self.base_url.removesuffix("/v1")


def stop_pid(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_pids(pids) -> list[int]:
    """SIGKILL each pid still alive (and not a zombie); return those that were."""
    import psutil
    killed = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
                killed.append(pid)
        except psutil.Error:
            pass
    return killed


class CpuWatch:
    """Samples CPU seconds (user + system) of process trees every SAMPLE_CPU_S: the last value seen per pid."""

    def __init__(self, roots: dict[str, int]):
        import psutil
        self.psutil = psutil
        self.roots = roots                    # group -> root pid; the root's descendants go to GROUP+"/children"
        self.seen: dict[int, tuple[str, float]] = {}
        self.base: dict[int, float] = {}      # CPU s of the processes already running at the start
        self.series: list[tuple[float, float]] = []   # (monotonic s, CPU s of every watched process so far)
        self.stop_evt = threading.Event()
        self.machine0 = psutil.cpu_times()
        self._sample()
        self.base = {pid: s for pid, (g, s) in self.seen.items() if not g.startswith("driver")}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        ps = self.psutil
        for group, pid in self.roots.items():
            try:
                root = ps.Process(pid)
                procs = [(group, root)] + [(group + "/children", c) for c in root.children(recursive=True)]
            except ps.Error:
                continue
            for g, p in procs:
                try:
                    t = p.cpu_times()
                    self.seen[p.pid] = (g, t.user + t.system)
                except ps.Error:
                    pass
        self.series.append((time.monotonic(), sum(s - self.base.get(pid, 0.0) for pid, (_, s) in self.seen.items())))

    def _loop(self) -> None:
        while not self.stop_evt.wait(SAMPLE_CPU_S):
            self._sample()

    def at(self, t: float) -> float:
        """CPU s of every watched process up to monotonic time t (the last sample before it)."""
        before = [c for ts, c in self.series if ts <= t]
        return before[-1] if before else 0.0

    def finish(self) -> dict:
        self.stop_evt.set()
        self.thread.join()
        self._sample()
        m1 = self.psutil.cpu_times()
        busy = (sum(m1) - m1.idle - getattr(m1, "iowait", 0)) - (sum(self.machine0) - self.machine0.idle
                                                                 - getattr(self.machine0, "iowait", 0))
        total = sum(m1) - sum(self.machine0)
        by: dict[str, float] = {}
        for pid, (g, s) in self.seen.items():
            by[g] = by.get(g, 0.0) + s - self.base.get(pid, 0.0)
        return {"cpu_s": by, "machine_busy": busy / total if total else None, "pids": sorted(self.seen)}


def task_runs(api_url: str, since: float) -> dict:
    """The `teacher-requests` task runs that started after `since` (epoch s), from the Prefect API: how many,
    and the sum and mean of their run time (the engine's start..end on the worker: the batch's requests plus
    the worker-side overhead of a task run)."""
    import datetime as dt

    import httpx
    after = dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat()
    rows, offset = [], 0
    while True:
        body = {"task_runs": {"name": {"like_": "teacher-requests"}, "start_time": {"after_": after}},
                "limit": 200, "offset": offset}
        page = httpx.post(api_url.rstrip("/") + "/task_runs/filter", json=body, timeout=30).json()
        rows += page
        if len(page) < 200:
            break
        offset += 200

    def ts(x):
        return dt.datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()
    run_s = [ts(r["end_time"]) - ts(r["start_time"]) for r in rows if r.get("end_time") and r.get("start_time")]
    return {"task_runs": len(rows), "task_run_s": sum(run_s) / len(run_s) if run_s else None,
            "task_busy_s": sum(run_s)}


# --------------------------------------------------------------------------- one run

def cli_args(recipe: str, runner: str, workers: int, stub: Stub, out: Path, a: argparse.Namespace,
             instr: Path) -> list[str]:
    args = [sys.executable, "-m", "datagen.cli", "run", recipe]
    if recipe == "distill":
        args += ["--input", str(instr), "--judge", "off"]
    else:
        args += ["--seeds", str(rt.SEEDS), "-n", str(a.si_n), "--schedule", "overlapped"]
    args += ["--name", recipe, "--seed", str(rt.SEED), "--base-url", stub.base_url, "--model", rt.MODEL,
             "--max-concurrency", str(a.concurrency), "--out", str(out), "--cache", str(out / "c.sqlite")]
    if runner == "dask":
        args += ["--runner", "dask", "--dask-workers", str(workers)]
    return args


def read_manifest(out: Path, name: str) -> dict | None:
    latest = out / name / "LATEST"
    if not latest.exists():
        return None
    path = out / name / latest.read_text().strip() / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_once(server_env: dict, server_pid: int, tmp: Path, recipe: str, runner: str, workers: int,
             a: argparse.Namespace, instr: Path, live: dict) -> dict:
    label = "single" if runner == "local" else f"dask {workers}"
    out = tmp / f"{recipe}-{runner}{workers}"
    out.mkdir(parents=True)
    stub = Stub(a.latency)
    live["stub"] = stub
    print(f"  {recipe:<13} {label:<7} ...", file=sys.stderr, end="", flush=True)
    rc, err, stats, cpu = None, "", {}, {"cpu_s": {}, "machine_busy": None, "pids": []}
    watch = None
    try:
        t0, t0_epoch = time.monotonic(), time.time()
        proc = subprocess.Popen(cli_args(recipe, runner, workers, stub, out, a, instr), cwd=REPO, env=server_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        live["cli"] = proc
        watch = CpuWatch({"driver": proc.pid, "prefect": server_pid, "stub": stub.proc.pid})
        try:
            _, err = proc.communicate(timeout=a.timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        wall = time.monotonic() - t0
        cpu = watch.finish()
        stats = stub.bench_stats()
        fa, la = stats.get("first_arrival"), stats.get("last_answer")
        if fa and la:  # CPU s of all the watched processes in the three phases of the run
            cpu["phases"] = (watch.at(fa), watch.at(la) - watch.at(fa), watch.series[-1][1] - watch.at(la))
    finally:
        if live.get("cli") is not None:
            if live["cli"].poll() is None:
                os.killpg(live["cli"].pid, signal.SIGKILL)
                live["cli"].wait()
            # anything the CLI started (Dask nannies, workers) and left running
            seen = list(watch.seen) if watch is not None else []
            left = kill_pids(p for p in seen if p not in (server_pid, stub.proc.pid))
            if left:
                print(f" [killed leftover pids {left}]", file=sys.stderr, end="")
        live["cli"] = None
        stub.stop()
        live["stub"] = None
    tr = {"task_runs": 0, "task_run_s": None, "task_busy_s": None}
    if runner == "dask":
        try:
            tr = task_runs(server_env["PREFECT_API_URL"], t0_epoch)
        except Exception as e:  # a bench reading its own server: say so, keep the run
            print(f" [task runs not read: {type(e).__name__}: {e}]", file=sys.stderr, end="")
    m = read_manifest(out, recipe)
    requests = sum(u.get("requests") or 0 for u in (m or {}).get("usage") or [])
    records = ((m or {}).get("counts") or {}).get("records", 0)
    per_worker: list[int] = []
    for role in ((m or {}).get("runner") or {}).get("roles") or []:
        per_worker += list((role.get("requests_per_worker") or {}).values())
    fa, la = stats.get("first_arrival"), stats.get("last_answer")
    cpu_s = cpu["cpu_s"]
    phases = cpu.get("phases") or (None, None, None)
    r = {"recipe": recipe, "config": label, "runner": runner, "workers": workers if runner == "dask" else 0,
         "rc": rc, "ok": rc == 0 and m is not None, "wall_s": wall,
         "start_s": (fa - t0) if fa else None, "teach_s": (la - fa) if fa and la else None,
         "tail_s": (t0 + wall - la) if la else None,
         "requests": requests, "stub_requests": stats.get("requests"), "records": records,
         "requests_per_worker": per_worker, "batches": sum(r.get("batches", 0) for r in
                                                           ((m or {}).get("runner") or {}).get("roles") or []),
         "max_in_flight": stats.get("max_in_flight"), "mean_in_flight": stats.get("mean_in_flight"),
         "cpu_driver_s": cpu_s.get("driver", 0.0), "cpu_dask_s": cpu_s.get("driver/children", 0.0),
         "cpu_prefect_s": cpu_s.get("prefect", 0.0) + cpu_s.get("prefect/children", 0.0),
         "cpu_stub_s": cpu_s.get("stub", 0.0) + cpu_s.get("stub/children", 0.0),
         "cpu_start_s": phases[0], "cpu_teach_s": phases[1], "cpu_tail_s": phases[2],
         "machine_busy": cpu["machine_busy"], **tr}
    r["requests_s"] = requests / wall if wall else 0.0
    r["records_s"] = records / wall if wall else 0.0
    r["requests_teach_s"] = requests / r["teach_s"] if r["teach_s"] else None
    # share of the generation period the workers spent inside teacher-requests task runs
    r["worker_busy"] = (r["task_busy_s"] / (workers * r["teach_s"])
                        if runner == "dask" and r["task_busy_s"] and r["teach_s"] else None)
    r["load1"] = os.getloadavg()[0]
    print(f" rc={rc} {wall:.1f} s, {requests} requests, {records} records", file=sys.stderr, flush=True)
    if rc != 0:
        print("    stderr tail:\n    " + "\n    ".join(err.strip().splitlines()[-15:]), file=sys.stderr, flush=True)
    if os.environ.get("BENCH_KEEP") is None:
        shutil.rmtree(out, ignore_errors=True)
    return r


# --------------------------------------------------------------------------- the table

def _f(x, spec: str, none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def spread(per_worker: list[int]) -> str:
    if not per_worker:
        return "-"
    return "/".join(str(n) for n in sorted(per_worker, reverse=True))


def summarise(results: list[dict]) -> list[dict]:
    """One row per (recipe, config): the median of every number over its runs (the ok ones, if any are);
    the per-worker spread of the run with the median wall time."""
    import statistics
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["recipe"], r["config"]), []).append(r)
    rows = []
    for runs in groups.values():
        use = [r for r in runs if r["ok"]] or runs
        row = dict(sorted(use, key=lambda r: r["wall_s"])[(len(use) - 1) // 2])
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = [r[k] for r in use if isinstance(r.get(k), (int, float))]
                row[k] = statistics.median(vals) if vals else None
        row.update(runs=len(runs), ok=all(r["ok"] for r in runs), rc=",".join(str(r["rc"]) for r in runs),
                   wall_min=min(r["wall_s"] for r in runs), wall_max=max(r["wall_s"] for r in runs))
        rows.append(row)
    return rows


def print_tables(results: list[dict], a: argparse.Namespace, total_s: float) -> None:
    results = summarise(results)
    print()
    print(f"Scale-out bench: fixed latency {a.latency} s per generation request, --max-concurrency {a.concurrency}, "
          f"distill {a.instructions} instructions (--judge off), self-instruct -n {a.si_n} overlapped; "
          f"{os.cpu_count()} CPUs; {a.repeat} run(s) per config, medians shown; bench total {total_s:.0f} s")
    hdr = (f"{'recipe':<13} {'config':<7} {'wall s':>6} {'range':>9} {'start s':>7} {'teach s':>7} {'tail s':>6} "
           f"{'req':>5} {'req/s':>6} {'x':>5} {'rec':>5} {'rec/s':>6} {'x':>5} {'req/s teach':>11} {'x':>5} "
           f"{'flight mean/max':>15}  per worker")
    print(hdr)
    print("-" * len(hdr))
    base = {r["recipe"]: r for r in results if r["runner"] == "local" and r["ok"]}
    for r in results:
        b = base.get(r["recipe"])

        def ratio(k):
            return f"{r[k] / b[k]:.2f}" if b and r.get(k) and b.get(k) else "n/a"
        flight = f"{_f(r['mean_in_flight'], '.1f')}/{_f(r['max_in_flight'], '.0f', '?')}"
        note = "" if r["ok"] else f"  FAILED rc={r['rc']}"
        rng = f"{r['wall_min']:.0f}-{r['wall_max']:.0f}" if r["runs"] > 1 else "-"
        print(f"{r['recipe']:<13} {r['config']:<7} {r['wall_s']:>6.1f} {rng:>9} {_f(r['start_s'], '7.1f'):>7} "
              f"{_f(r['teach_s'], '7.1f'):>7} {_f(r['tail_s'], '6.1f'):>6} {r['requests']:>5.0f} "
              f"{r['requests_s']:>6.1f} {ratio('requests_s'):>5} {r['records']:>5.0f} {r['records_s']:>6.1f} "
              f"{ratio('records_s'):>5} {_f(r['requests_teach_s'], '11.1f'):>11} {ratio('requests_teach_s'):>5} "
              f"{flight:>15}  {spread(r['requests_per_worker'])}{note}")
    print("range: min-max wall s over the runs; x: ratio to the single process (same recipe); req/s, rec/s over "
          "wall s; req/s teach over teach s; per worker: requests per Dask worker (manifest runner.roles); "
          "flight: requests in flight at the stub (mean over the generation period / peak)")
    for recipe, b in base.items():
        extra = [f"{r['config']} {r['start_s'] - b['start_s']:+.1f} s" for r in results
                 if r["recipe"] == recipe and r["runner"] == "dask" and r["start_s"] is not None and b["start_s"]]
        if extra:
            print(f"{recipe}: start s beyond the single process's (the LocalCluster's start-up): {', '.join(extra)}")
    print()
    hdr = (f"{'recipe':<13} {'config':<7} {'CPU s driver':>12} {'dask procs':>10} {'prefect':>7} {'stub':>6} "
           f"{'total':>6} {'start':>6} {'teach':>6} {'tail':>6} {'ms/req teach':>12} {'machine busy':>12} {'load1':>5} "
           f"{'batches':>7} {'task runs':>9} {'task run s':>10} {'workers busy':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        tot = r["cpu_driver_s"] + r["cpu_dask_s"] + r["cpu_prefect_s"] + r["cpu_stub_s"]
        per = (f"{1000 * r['cpu_teach_s'] / r['requests']:.1f}" if r["requests"] and r["cpu_teach_s"] is not None
               else "n/a")
        busy = "n/a" if r["machine_busy"] is None else f"{100 * r['machine_busy']:.0f}%"
        wb = "-" if r["worker_busy"] is None else f"{100 * r['worker_busy']:.0f}%"
        print(f"{r['recipe']:<13} {r['config']:<7} {r['cpu_driver_s']:>12.1f} {r['cpu_dask_s']:>10.1f} "
              f"{r['cpu_prefect_s']:>7.1f} {r['cpu_stub_s']:>6.1f} {tot:>6.1f} {_f(r['cpu_start_s'], '.1f'):>6} "
              f"{_f(r['cpu_teach_s'], '.1f'):>6} {_f(r['cpu_tail_s'], '.1f'):>6} {per:>12} {busy:>12} "
              f"{r['load1']:>5.1f} {r['batches'] or '-':>7} {r['task_runs'] or '-':>9} "
              f"{_f(r['task_run_s'], '.3f', '-'):>10} {wb:>12}")
    print(f"CPU s: user+system, sampled every {SAMPLE_CPU_S} s from /proc over the CLI run (driver: the CLI process; "
          "dask procs: its children, LocalCluster nannies and workers; prefect: the bench's one server; "
          "start/teach/tail: the total split at the first request and the last answer; ms/req teach: teach CPU / "
          "requests); "
          "machine busy: share of all cores busy during the run, whatever ran (load1: the 1-min load average at "
          "its end);\ntask runs: the run's "
          "`teacher-requests` task runs at the Prefect API, task run s: their mean start..end (vs the stub's "
          "latency: what a batch costs beyond its slowest request), workers busy: their sum / (workers x teach s)")
    sys.stdout.flush()


# --------------------------------------------------------------------------- driver

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.5, help="seconds the stub takes per generation request (0.5)")
    ap.add_argument("--concurrency", type=int, default=32, help="--max-concurrency of every run (32)")
    ap.add_argument("--instructions", type=int, default=240, help="distinct instructions for distill (240)")
    ap.add_argument("--si-n", type=int, default=60, help="self-instruct -n (60; 0: no self-instruct runs)")
    ap.add_argument("--workers", default="1,2,4", help="Dask worker counts, comma-separated (1,2,4)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per config, interleaved; medians are shown (1)")
    ap.add_argument("--quick", action="store_true", help="distill only, 160 instructions")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per CLI run before it is killed")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the stub subprocess
    a = ap.parse_args()
    if a.serve:
        rt.FIXED_S = a.latency
        return rt.serve("fixed", "diverse")

    def on_term(signum, frame):  # a SIGTERM stops the bench like Ctrl-C: everything it started, by PID
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    if a.quick:
        a.instructions, a.si_n = 160, 0
    workers = [int(w) for w in a.workers.split(",") if w.strip()]
    recipes = ["distill"] + (["self-instruct"] if a.si_n > 0 else [])

    tmp = Path(tempfile.mkdtemp(prefix="scale-out-"))
    instr = tmp / "instructions.txt"
    write_instructions(instr, a.instructions)
    results: list[dict] = []
    live: dict = {"cli": None, "stub": None}
    server, interrupted = None, False
    t_all = time.monotonic()
    try:
        print(f"starting Prefect server (PREFECT_HOME under {tmp}) ...", file=sys.stderr, flush=True)
        server = rt.PrefectServer(Path(tempfile.mkdtemp(prefix="prefect-home-", dir=tmp)))
        env = {**server.env, "DATAGEN_HOME": str(tmp / "datagen-home")}
        for recipe in recipes:
            for _ in range(a.repeat):
                for runner, w in [("local", 0)] + [("dask", w) for w in workers]:
                    results.append(run_once(env, server.proc.pid, tmp, recipe, runner, w, a, instr, live))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping what the bench started; the tables hold the finished runs", file=sys.stderr)
    finally:
        if live.get("cli") is not None and live["cli"].poll() is None:
            os.killpg(live["cli"].pid, signal.SIGKILL)
            live["cli"].wait()
        if live.get("stub") is not None:
            live["stub"].stop()
        if server is not None:
            import psutil
            try:
                kids = [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)]
            except psutil.Error:
                kids = []
            server.stop()
            kill_pids(kids)
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(tmp, ignore_errors=True)
    if not results:
        return 1
    print_tables(results, a, time.monotonic() - t_all)
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                      "cpus": os.cpu_count(), "latency_s": a.latency,
                                      "max_concurrency": a.concurrency, "instructions": a.instructions,
                                      "si_n": a.si_n, "repeat": a.repeat, "summary": summarise(results),
                                      "results": results}, indent=1) + "\n")
    return 0 if all(r["ok"] for r in results) and not interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
