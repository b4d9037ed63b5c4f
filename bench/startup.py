"""Start-up cost of a small command: `datagen dedup` of a 50-line file, side by side:

  ephemeral   Prefect's temporary server, started and stopped by every command (DATAGEN_PREFECT_SERVER=ephemeral)
  cold        no server runs: the command starts the background server (stopped again before each cold run)
  warm        the background server runs: the command reuses it

plus `datagen --version` (Python and the CLI's own imports), and for `datagen run distill` of two
instructions against a loopback stub teacher (tests/openai_stub.py) the time from the command's start to
its first generation request, ephemeral and warm. Each run's wall time is the whole command,
process start to exit; CPU is the command's own user+sys (the server's is not counted), which says more
than wall time on a shared machine, so the load average is printed too. Runs with a temporary DATAGEN_SERVER_DIR
and stops the server it started. A bench, not a test: it asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/startup.py [--cold 3] [--warm 7] [--ephemeral 2] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "datagen.cli", *args], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, cpu, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", type=int, default=3, help="cold runs, each after stopping the server (default 3)")
    ap.add_argument("--warm", type=int, default=7, help="warm runs (default 7)")
    ap.add_argument("--ephemeral", type=int, default=2, help="runs with a temporary server each (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="warm `datagen run distill` timings to the first teacher "
                                                       "request (one ephemeral besides; 0: none; default 3)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="datagen-startup-"))
    data = tmp / "notes.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Explain idea {i % 40} briefly.", "output": f"Idea {i % 40}."})
                            + "\n" for i in range(50)))
    env = {**os.environ, "DATAGEN_SERVER_DIR": str(tmp / "server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for key in ("PREFECT_API_URL", "DATAGEN_PREFECT_SERVER"):
        env.pop(key, None)
    runs: dict[str, list[tuple[float, float]]] = {"--version": [], "ephemeral": [], "cold": [], "warm": []}
    n = 0

    def dedup(label: str, extra: dict[str, str] | None = None) -> None:
        nonlocal n
        n += 1
        wall, cpu, p = timed(["dedup", str(data), "--out", str(tmp / f"out{n}")], {**env, **(extra or {})})
        started = "starting a local Prefect server" in p.stderr
        if (label == "cold") != started:
            sys.exit(f"a {label} run {'started' if started else 'did not start'} the server:\n{p.stderr[-2000:]}")
        runs[label].append((wall, cpu))
        print(f"  {label:<10} {wall:6.2f} s wall  {cpu:5.2f} s cpu", flush=True)
        shutil.rmtree(tmp / f"out{n}", ignore_errors=True)

    def stop_server() -> None:
        subprocess.run([sys.executable, "-m", "datagen.cli", "server", "stop"], env=env, cwd=REPO,
                       capture_output=True, timeout=120)

    load = os.getloadavg()[0]
    print(f"datagen dedup, 50 lines ({os.cpu_count()} CPUs, load average {load:.2f} at the start)")
    for _ in range(3):
        wall, cpu, _p = timed(["--version"], env)
        runs["--version"].append((wall, cpu))
    print(f"  {'--version':<10} {statistics.median(w for w, _ in runs['--version']):6.2f} s wall  (imports only)")
    for _ in range(a.ephemeral):
        dedup("ephemeral", {"DATAGEN_PREFECT_SERVER": "ephemeral"})
    first_call: dict[str, list[float]] = {"ephemeral": [], "warm": []}
    stub = _start_stub() if a.runs else None
    try:
        for _ in range(a.cold):
            stop_server()
            dedup("cold")
        for _ in range(a.warm):
            dedup("warm")
        if stub is not None:
            proc, url = stub
            for label in ["ephemeral"] + ["warm"] * a.runs:
                n += 1
                extra = {"DATAGEN_PREFECT_SERVER": "ephemeral"} if label == "ephemeral" else {}
                first_call[label].append(_to_first_call(url, tmp / f"run{n}", {**env, **extra}))
                print(f"  run {label:<6} first generation request after {first_call[label][-1]:5.2f} s", flush=True)
    finally:
        stop_server()
        if stub is not None:
            stub[0].terminate()
            stub[0].wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(label: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[label])

    print()
    print(f"{'mode':<10} {'runs':>4} {'median wall s':>14} {'min wall s':>11} {'median cpu s':>13}")
    for label, xs in runs.items():
        if xs:
            print(f"{label:<10} {len(xs):>4} {med(label, 0):>14.2f} {min(w for w, _ in xs):>11.2f} {med(label, 1):>13.2f}")
    if runs["cold"] and runs["warm"]:
        print(f"warm / cold (median wall): {med('warm', 0) / med('cold', 0):.2f} "
              f"(warm is {med('cold', 0) / med('warm', 0):.1f}x faster)")
    if runs["ephemeral"] and runs["warm"]:
        print(f"warm / ephemeral (median wall): {med('warm', 0) / med('ephemeral', 0):.2f} "
              f"(warm is {med('ephemeral', 0) / med('warm', 0):.1f}x faster)")
    for label, xs in first_call.items():
        if xs:
            print(f"datagen run distill, to the first generation request, {label}: median {statistics.median(xs):.2f} s "
                  f"({len(xs)} run{'s' if len(xs) != 1 else ''})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def _start_stub() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "openai_stub.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        sys.exit(f"the stub teacher did not start: {line!r}")
    return proc, line.split()[1]


def _to_first_call(url: str, out: Path, env: dict[str, str]) -> float:
    """Seconds from starting `datagen run distill` of two instructions to the stub's first generation request."""
    import httpx

    root = url.removesuffix("/v1")
    httpx.post(root + "/stub/reset", timeout=10)
    out.mkdir(parents=True)
    (out / "prompts.txt").write_text("Explain photosynthesis in one sentence.\nName three prime numbers.\n")
    t0 = time.time()
    timed(["run", "distill", "--input", str(out / "prompts.txt"), "--judge", "off", "--base-url", url,
           "--model", "stub", "--out", str(out), "--cache", str(out / "c.sqlite")], env)
    seen = [r for r in httpx.get(root + "/stub/requests", timeout=10).json() if r["path"].endswith("completions")]
    if not seen:       # (the run's pre-flight check of the endpoint, before Prefect starts, does not count)
        sys.exit("datagen run made no generation request")
    return min(r["time"] for r in seen) - t0


if __name__ == "__main__":
    main()
