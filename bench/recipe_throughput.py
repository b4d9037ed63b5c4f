"""Self-Instruct recipe throughput: --schedule overlapped vs sequential, whole CLI runs, same process.

Run from the repository root:  .venv/bin/python bench/recipe_throughput.py [--n 500] [--quick]

Every run is a real `datagen run self-instruct --seeds seeds/175.jsonl -n N --base-url URL --model stub
--max-concurrency C --schedule S --seed 42 --out TMP --cache TMP/c.sqlite` (its own fresh folder and cache,
so nothing is cached), pointed at one Prefect API server started once for the whole bench and stopped by
PID at the end. The teacher is a loopback OpenAI-compatible stub (tests/openai_stub.py) in its own
process, started fresh for every run, answering with tests/si_responder.py (Self-Instruct's four prompt
kinds in the right shape). Two latency kinds:

- fixed:  every generation request is answered after 1.0 s;
- jitter: after 0.2 + 1.8*u s, u uniform in [0, 1) drawn from a hash of the request's content, so two
          runs that send the same requests see the same latencies (random-looking, but reproducible).
  Answer texts depend only on the request (si_responder hashes the prompt), never on timing.

Responder (--responder): "diverse" (default) answers classification and instance prompts with
tests/si_responder.py unchanged, and bootstrap prompts (ending in "9.") in si_responder's exact shape
(1-4 items, " text" then "10. text" ...) but with instructions drawn from a larger vocabulary, seeded
by the prompt's hash. "si" answers everything with tests/si_responder.py alone; its bootstrap
instructions come from 10 verbs x 20 nouns x 8 endings, so they soon fail ROUGE-L < 0.7 against the
pool: a run stalls (manifest "partial": "stalled") at ~70-80 instructions and never reaches N=500, and
the bench would time the stall detector rather than generation. The "publ." column shows it.

The latency is applied inside the responder (the stub's own latency is 0), which also keeps the
server-side in-flight count: +1 when a generation request arrives, -1 when it is answered. The stub
process samples that count every 50 ms. "mean in flight" = mean of the samples taken between the first
answer and the last request arrival (the generation period: the start-up ramp and the final drain are
left out), as a share of C.

Runs: overlapped at C = 8, 64, 256 and sequential at 256 (the baseline), each for both latency kinds,
plus a second jittered overlapped run at 64 to check that two runs with the same C and seed publish
byte-identical records.jsonl. --quick: only overlapped at 64 (jittered twice) and sequential at 256.

Targets: mean in flight >= 70 % of C for overlapped at 64 and 256; overlapped@256 instructions/s
>= 10x sequential@256 instructions/s, both during generation ("teach s": first request .. last answer;
the wall-time ratio is printed too: each CLI run also spends ~6 s starting Python and Prefect and
publishing, the same for both schedules and independent of N, so at N=500 it caps the wall ratio).
The table is printed whatever the outcome; misses are named.
wall time is the CLI process's whole wall time (interpreter start, flow start, publishing included).
Numbers depend on what else the machine runs (the CLI, the stub and Prefect share the cores).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds" / "175.jsonl"
MODEL = "stub"
SEED = 42
SAMPLE_S = 0.05
FIXED_S = 1.0
JITTER_RANGE = (0.2, 2.0)
IN_FLIGHT_TARGET = 0.70     # share of C, overlapped at 64 and 256
SPEEDUP_TARGET = 10.0       # overlapped@256 / sequential@256 instructions/s
WINDOW_X = 0.0             # --window-x: overlapped window as a multiple of C (0: the CLI's default)
NON_CONTENT = frozenset({"stop", "max_tokens", "max_completion_tokens", "n", "user", "stream"})


# --------------------------------------------------------------------------- the stub process (--serve)

def _unit(body: dict) -> float:
    core = {k: v for k, v in body.items() if k not in NON_CONTENT}
    h = hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


VOCAB_SOURCES = (
    "autumn leaves recursion ocean tides photosynthesis compound interest volcanoes printing press binary search "
    "honeybees climate adaptation jazz improvisation water cycle supply demand black holes public libraries "
    "sourdough bread electric cars roman roads sleep hygiene prime numbers urban gardening immune system chess "
    "openings glaciers password managers silk road plate tectonics remote work origami vaccines lighthouses stock "
    "market coral reefs time zones bicycle maintenance renewable energy ancient egypt machine translation migratory "
    "birds rainforests human heart tea ceremonies solar eclipses open source software desert ecosystems fibonacci "
    "sequence public speaking earthquakes minimalism periodic table street food spaced repetition hash tables wind "
    "turbines french revolution mushrooms budget planning sea turtles telescope vegetable fermentation robotics "
    "cloud formation board games olympic games data privacy bridges yeast tax brackets sails endgames river deltas "
    "gears chords ant colonies tidal power compilers credit scores monsoons cranes beekeeping lunar phases "
    "curious child bullet points concrete example busy manager simple analogy common mistake checklist")
BOOT_VERBS = ("Describe", "Explain", "Summarize", "Compare", "List", "Suggest", "Outline", "Classify", "Rewrite",
              "Estimate", "Evaluate", "Predict", "Rank", "Critique", "Translate", "Justify", "Plan", "Review")


def diverse_bootstrap(prompt: str) -> str:
    """si_responder's bootstrap shape, with instructions that pass ROUGE-L < 0.7 against a large pool."""
    import random
    rng = random.Random(hashlib.sha256(("diverse:" + prompt).encode()).digest())
    vocab = sorted(set(VOCAB_SOURCES.split()))
    items = [f"{rng.choice(BOOT_VERBS)} {' '.join(rng.sample(vocab, rng.randint(6, 9)))}."
             for _ in range(rng.randint(1, 4))]
    return " " + "\n".join(f"{i}. {t}" if i > 9 else t for i, t in enumerate(items, 9))


def serve(kind: str, which: str = "diverse") -> int:
    """Run the stub with the measuring responder; print READY url; serve until SIGTERM.

    GET /stub/bench returns the in-flight samples summary (admin path: neither logged nor counted).
    """
    sys.path.insert(0, str(REPO / "tests"))
    from openai_stub import StubApp, StubConfig, _json_response
    from si_responder import responder as si_responder

    lo, hi = JITTER_RANGE
    st = {"in_flight": 0, "max_in_flight": 0, "requests": 0, "answers": 0,
          "first_arrival": None, "last_arrival": None, "first_answer": None, "last_answer": None}
    samples: list[tuple[float, int]] = []

    async def responder(k: str, body: dict) -> str:
        now = time.monotonic()
        st["in_flight"] += 1
        st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        st["requests"] += 1
        st["first_arrival"] = st["first_arrival"] or now
        st["last_arrival"] = now
        try:
            await asyncio.sleep(FIXED_S if kind == "fixed" else lo + (hi - lo) * _unit(body))
            if which == "diverse":
                prompt = body.get("prompt") or body["messages"][-1]["content"]
                if prompt.rstrip().endswith("9."):
                    return diverse_bootstrap(prompt)
            return si_responder(k, body)
        finally:
            st["in_flight"] -= 1
            st["answers"] += 1
            now = time.monotonic()
            st["first_answer"] = st["first_answer"] or now
            st["last_answer"] = now

    def summary() -> dict:
        a, b = st["first_answer"], st["last_arrival"]
        window = [n for t, n in samples if a is not None and b is not None and a <= t <= b]
        return {**st, "samples": len(samples), "period_samples": len(window),
                "period_s": (b - a) if a is not None and b is not None else None,
                "mean_in_flight": sum(window) / len(window) if window else None}

    class BenchApp(StubApp):
        def _admin(self, req):
            if req.path == "/stub/bench":
                return _json_response(200, summary())
            return super()._admin(req)

    async def sampler() -> None:
        nxt = time.monotonic()
        while True:
            samples.append((time.monotonic(), st["in_flight"]))
            nxt += SAMPLE_S
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def main() -> None:
        app = BenchApp(StubConfig(responder=responder, log_max_requests=16, log_max_body_chars=64))
        await app.start("127.0.0.1", 0)
        task = asyncio.create_task(sampler())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY http://127.0.0.1:{app.port}/v1", flush=True)
        await stop.wait()
        task.cancel()
        await app.stop()

    asyncio.run(main())
    return 0


class Stub:
    def __init__(self, kind: str, which: str):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", kind,
                                      "--responder", which],
                                     stdout=subprocess.PIPE, text=True, cwd=REPO)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"stub did not start: {line!r}")
        self.base_url = line.split()[1]
        self.root = self.base_url.rsplit("/v1", 1)[0]

    def bench_stats(self) -> dict:
        import httpx
        return httpx.get(self.root + "/stub/bench", timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- Prefect server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """One `prefect server start` for the whole bench (as tests/conftest.py's prefect_env)."""

    def __init__(self, home: Path):
        import httpx
        port = _free_port()
        self.env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
        self.env.pop("OPENAI_BASE_URL", None)
        self.env.pop("OPENAI_API_KEY", None)
        self.log_path = home / "server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(port)], env={**self.env, "PREFECT_API_URL": ""},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prefect server did not start; see {self.log_path}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- one run

def _has_schedule_flag() -> bool:
    p = subprocess.run([sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--help"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    return "--schedule" in p.stdout


def run_once(env: dict, tmp_root: Path, tag: str, schedule: str, c: int, kind: str, n: int,
             timeout_s: float, which: str = "diverse") -> dict:
    out = tmp_root / tag
    out.mkdir(parents=True)
    stub = Stub(kind, which)
    args = [sys.executable, "-m", "datagen.cli", "run", "self-instruct", "--seeds", str(SEEDS), "-n", str(n),
            "--name", "si", "--seed", str(SEED), "--base-url", stub.base_url, "--model", MODEL,
            "--max-concurrency", str(c), "--schedule", schedule, "--out", str(out), "--cache", str(out / "c.sqlite")]
    if schedule == "overlapped" and WINDOW_X:
        args += ["--window", str(max(1, round(WINDOW_X * c)))]
    print(f"  {tag}: {schedule} C={c} {kind} ...", file=sys.stderr, end="", flush=True)
    rc, err = None, ""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = time.perf_counter() - t0
    try:
        stats = stub.bench_stats()
    finally:
        stub.stop()
    records, published = None, 0
    latest = out / "si" / "LATEST"
    if latest.exists():
        path = out / "si" / latest.read_text().strip() / "records.jsonl"
        if path.exists():
            records = path.read_bytes()  # one record per instance: count distinct instructions
            published = len({json.loads(x)["instruction"] for x in records.splitlines() if x.strip()})
    r = {"tag": tag, "schedule": schedule, "c": c, "kind": kind, "rc": rc, "wall_s": wall,
         "requests": stats["requests"], "max_in_flight": stats["max_in_flight"],
         "mean_in_flight": stats["mean_in_flight"], "period_s": stats["period_s"],
         "active_s": (stats["last_answer"] - stats["first_arrival"]) if stats["first_arrival"] else 0.0,
         "published": published, "records_sha": hashlib.sha256(records).hexdigest()[:12] if records else None,
         "ok": rc == 0 and records is not None}
    share = "n/a" if r["mean_in_flight"] is None else f"{100 * r['mean_in_flight'] / c:.0f}%"
    print(f" rc={rc} {wall:.1f} s, {r['requests']} requests, mean in flight {share} of C, "
          f"max {r['max_in_flight']}, {published} instructions published", file=sys.stderr, flush=True)
    if rc != 0:
        print("    stderr tail:\n    " + "\n    ".join(err.strip().splitlines()[-15:]), file=sys.stderr, flush=True)
    if os.environ.get("BENCH_KEEP") is None:
        shutil.rmtree(out, ignore_errors=True)
    return r


# --------------------------------------------------------------------------- driver

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="instructions per run (-n); default 500")
    ap.add_argument("--quick", action="store_true", help="only overlapped C=64 (jittered twice) and sequential C=256")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per CLI run before it is given up")
    ap.add_argument("--responder", choices=("diverse", "si"), default="diverse",
                    help="diverse (default): si_responder with wider bootstrap answers; si: tests/si_responder.py "
                         "alone (stalls at ~70-80 instructions)")
    ap.add_argument("--only", default="", help="comma-separated run tags to keep (e.g. fixed-ov256,fixed-seq256)")
    ap.add_argument("--window-x", type=float, default=0.0, help="overlapped --window as a multiple of C "
                    "(default: none, the CLI's own default)")
    ap.add_argument("--serve", choices=("fixed", "jitter"), help=argparse.SUPPRESS)  # the stub subprocess
    args = ap.parse_args()
    global WINDOW_X
    WINDOW_X = args.window_x
    if args.serve:
        return serve(args.serve, args.responder)

    if not _has_schedule_flag():
        print("`datagen run self-instruct --help` lists no --schedule: nothing to measure yet", file=sys.stderr)
        return 2
    levels = [64] if args.quick else [8, 64, 256]
    plan = []  # (schedule, C, kind, tag)
    for kind in ("fixed", "jitter"):
        for c in levels:
            plan.append(("overlapped", c, kind, f"{kind}-ov{c}"))
            if kind == "jitter" and c == 64:
                plan.append(("overlapped", c, kind, f"{kind}-ov{c}-again"))
        plan.append(("sequential", 256, kind, f"{kind}-seq256"))
    if args.only:
        keep = set(args.only.split(","))
        plan = [p for p in plan if p[3] in keep]

    tmp_root = Path(tempfile.mkdtemp(prefix="recipe-throughput-"))
    t_all = time.perf_counter()
    results: list[dict] = []
    print(f"starting Prefect server (PREFECT_HOME under {tmp_root}) ...", file=sys.stderr, flush=True)
    server = PrefectServer(Path(tempfile.mkdtemp(prefix="prefect-home-", dir=tmp_root)))
    try:
        for schedule, c, kind, tag in plan:
            results.append(run_once(server.env, tmp_root, tag, schedule, c, kind, args.n, args.timeout,
                                    args.responder))
    finally:
        server.stop()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    total_s = time.perf_counter() - t_all

    by = {r["tag"]: r for r in results}
    lat = {"fixed": f"fixed {FIXED_S:.1f}s", "jitter": f"jitter {JITTER_RANGE[0]}-{JITTER_RANGE[1]}s"}
    print()
    print(f"Self-Instruct, N={args.n}, seed {SEED}, seeds/175.jsonl, responder {args.responder}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; bench total {total_s:.0f} s")
    hdr = (f"{'schedule':<10} {'C':>4} {'latency':<15} {'wall s':>7} {'teach s':>7} {'requests':>8} {'req/s':>7} "
           f"{'in flight/C':>11} {'max':>4} {'instr/s':>7} {'publ.':>5}  note")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        share = "n/a" if r["mean_in_flight"] is None else f"{100 * r['mean_in_flight'] / r['c']:.1f}%"
        note = "" if r["ok"] else f"FAILED rc={r['rc']}"
        if r["tag"].endswith("-again"):
            note = (note + " repeat run").strip()
        if r["ok"] and r["published"] != args.n:
            note = (note + f" published {r['published']} != N").strip()
        print(f"{r['schedule']:<10} {r['c']:>4} {lat[r['kind']]:<15} {r['wall_s']:>7.1f} {r['active_s']:>7.1f} "
              f"{r['requests']:>8d} "
              f"{r['requests'] / r['wall_s']:>7.1f} {share:>11} {r['max_in_flight']:>4d} "
              f"{args.n / r['wall_s']:>7.2f} {r['published']:>5d}  {note}")
    print("in flight/C: server-side mean over the generation period (first answer .. last request arrival), "
          f"sampled every {int(SAMPLE_S * 1000)} ms; max: peak in flight; instr/s = N / wall; "
          "publ.: distinct instructions in records.jsonl;\nteach s: first request arrival .. last answer at the "
          "stub (wall s minus CLI start-up, flow set-up and publishing); req/s = requests / wall")
    print()

    missed: list[str] = []
    top = max(levels)
    for kind in ("fixed", "jitter"):
        ov, seq = by.get(f"{kind}-ov{top}"), by.get(f"{kind}-seq256")
        label = f"overlapped@{top} / sequential@256 instructions/s ({lat[kind]})"
        if ov and seq and ov["ok"] and seq["ok"]:
            ratio = seq["wall_s"] / ov["wall_s"]  # same N: the ratio of instructions/s
            gen = seq["active_s"] / ov["active_s"] if ov["active_s"] else float("nan")
            print(f"{label}: {ratio:.2f}x on wall time, {gen:.2f}x during generation (teach s)")
            # judged, like mean in flight, during generation: the CLI's own start-up and publishing
            # (~6 s here) are the same for both schedules and do not grow with N
            if top == 256 and gen < SPEEDUP_TARGET:
                missed.append(f">= {SPEEDUP_TARGET:.0f}x speedup during generation ({lat[kind]}: {gen:.2f}x)")
        else:
            print(f"{label}: n/a (a run failed)")
            missed.append(f"speedup ({lat[kind]}): a run failed")
    if top != 256:
        print(f"  (--quick: no overlapped@256, so the >= {SPEEDUP_TARGET:.0f}x target is not judged)")

    a, b = by.get("jitter-ov64"), by.get("jitter-ov64-again")
    same = bool(a and b and a["records_sha"] and a["records_sha"] == b["records_sha"])
    print(f"jittered overlapped@64, two runs, same seed: identical records.jsonl: {same} "
          f"(sha256 {a and a['records_sha']} vs {b and b['records_sha']})")
    if not same:
        missed.append("identical records.jsonl across two jittered runs")
    f64 = by.get("fixed-ov64")
    if f64 and a:
        print(f"  (for information: fixed vs jittered overlapped@64 identical records.jsonl: "
              f"{bool(f64['records_sha'] and f64['records_sha'] == a['records_sha'])})")
    for r in results:
        if r["schedule"] == "overlapped" and r["c"] in (64, 256):
            if r["ok"] and r["mean_in_flight"] is None:
                missed.append(f">= {IN_FLIGHT_TARGET:.0%} mean in flight ({r['tag']}: no generation period)")
            elif r["ok"] and r["mean_in_flight"] / r["c"] < IN_FLIGHT_TARGET:
                missed.append(f">= {IN_FLIGHT_TARGET:.0%} mean in flight ({r['schedule']}@{r['c']}, "
                              f"{lat[r['kind']]}: {r['mean_in_flight'] / r['c']:.1%})")
    for r in results:
        if not r["ok"]:
            missed.append(f"run {r['tag']} failed (rc={r['rc']})")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
