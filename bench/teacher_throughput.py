"""Teacher client throughput at high concurrency: our Teacher vs one plain httpx.AsyncClient, same run.

Run from the repository root:  python bench/teacher_throughput.py [--quick] [--concurrency 64,256,1024]

An OpenAI-compatible stub (tests/openai_stub.py) runs in its own process and answers every request
after a fixed latency (1.0 s), so the ideal rate at C requests in flight is C / latency. For each C:

- ceiling: a trivial keep-alive client on raw asyncio streams (C connections, one request at a time
  each), to show what the stub server itself sustains on this machine; no client can beat it here.
- ours: datagen.teacher.client.Teacher (cache=None, max_concurrency=C), real `complete()` calls with
  distinct prompts, on whatever transport datagen/teacher/transport.py builds.
- baseline: one httpx.AsyncClient with limits max_connections=C (httpx's own httpcore transport)
  posting the same request bodies and parsing the same JSON.

Each measurement: C workers. A warm-up wave (one request per worker: the connections get opened)
is timed on its own, then every worker sends `rounds` more requests back to back (12; --quick 6).

- % of ideal (the target figure): the steady-state rate / (C / latency). Steady state = each
  worker's second half of requests, timed from the end of its first half (so every interval holds
  whole request cycles); the rates of all workers add up. It leaves out the start: all C requests
  leave at once, the client works through C answers arriving together, and the burst takes a few
  rounds to spread over the latency period -- a cost paid once per run, not per request.
- whole run: requests / wall time of the whole timed phase, start-up burst included (also reported,
  so a reader sees what a short run gets); warm-up wave: C / its wall time (connection set-up too).
- client CPU per request: time.process_time() delta over the timed phase / requests (this process
  only; the stub's CPU use is read from /proc and printed beside it).

The baseline is so slow at high C that its timed phase stops starting new requests after a deadline
(10 s; --quick 3 s) and is then drained; where not every worker got past half its requests, its
figure is requests / wall time (it is CPU-bound there, so there is no start-up burst to leave out).
The stub's /stats confirms how many requests were really in flight at once. Answers are
deterministic per request body, so every client must return identical texts for the same prompts.
--alternatives also measures the designs transport.py was chosen against (printed, not in the JSON).

Numbers depend on what else the machine runs (both processes need a core): re-run when noisy.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from datagen.teacher.client import Teacher  # noqa: E402
from datagen.teacher.config import TeacherConfig  # noqa: E402

LATENCY_S = 1.0
MODEL = "stub"
PARAMS = {"temperature": 0, "max_tokens": 64}
TARGETS = {256: 90.0, 1024: 80.0}  # % of ideal rate the issue asks for at these concurrencies
CPU_BUDGET_MS = 1.0


def prompt(i: int) -> str:
    return f"Write new task instructions, distinct from the ones below (batch {i}).\n1. Explain topic {i}.\n2."


def body(i: int) -> dict:
    return {"model": MODEL, **PARAMS, "prompt": prompt(i)}  # what Teacher sends for api="completions"


# --------------------------------------------------------------------------- the stub process

class Stub:
    def __init__(self, latency_s: float):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "openai_stub.py"), "--port", "0", "--latency", str(latency_s)],
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"stub did not start: {line!r}")
        self.base_url = line.split()[1]
        self.root = self.base_url.rsplit("/v1", 1)[0]

    def cpu_s(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stats_and_reset(self) -> dict:
        stats = httpx.get(self.root + "/stats", timeout=30).json()
        httpx.post(self.root + "/stub/reset", timeout=30)
        return stats

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- clients under test

class RawClient:
    """Keep-alive HTTP/1.1 on bare asyncio streams: the cheapest client possible, for the ceiling."""

    def __init__(self, base_url: str):
        u = httpx.URL(base_url)
        self.host, self.port, self.path = u.host, u.port, u.path.rstrip("/") + "/completions"
        self.idle: list = []

    async def __call__(self, i: int) -> str:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        data = json.dumps(body(i)).encode()
        writer.write(f"POST {self.path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(data)}\r\n\r\n".encode() + data)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        payload = json.loads(await reader.readexactly(length))
        self.idle.append(conn)
        return payload["choices"][0]["text"]

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()


class OursClient:
    def __init__(self, base_url: str, concurrency: int):
        self.teacher = Teacher(TeacherConfig(base_url=base_url, model=MODEL, max_concurrency=concurrency), cache=None)

    async def __call__(self, i: int) -> str:
        return (await self.teacher.complete(prompt(i), PARAMS)).text

    async def aclose(self) -> None:
        await self.teacher.aclose()

    def retries(self) -> int:
        return sum(self.teacher.usage.retries.values())


class HttpxClient:
    """Any httpx.AsyncClient posting the baseline's requests (for --alternatives)."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def __call__(self, i: int) -> str:
        resp = await self.client.post("completions", json=body(i))
        resp.raise_for_status()
        return resp.json()["choices"][0]["text"]

    async def aclose(self) -> None:
        await self.client.aclose()


class BaselineClient(HttpxClient):
    """One plain httpx.AsyncClient with a pool of C connections: how most tools call an endpoint."""

    def __init__(self, base_url: str, concurrency: int):
        super().__init__(httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(120.0, connect=10.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)))


class ShardedHttpxClient:
    """C/4 httpx.AsyncClients of 4 connections each, used in turn: small pools, no pool walk."""

    def __init__(self, base_url: str, concurrency: int, per_client: int = 4):
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        self.clients = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(120.0, connect=10.0))
                        for _ in range(max(1, concurrency // per_client))]
        self.next = itertools.cycle(self.clients)

    async def __call__(self, i: int) -> str:
        resp = await next(self.next).post("completions", json=body(i))
        resp.raise_for_status()
        return resp.json()["choices"][0]["text"]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def alternatives(base_url: str, concurrency: int) -> dict:
    """The designs transport.py was chosen against, at the HTTP level (no Teacher on top).

    httpx-sharded: C/4 httpx clients x 4 connections; aiohttp-transport: one httpx.AsyncClient on our
    AiohttpTransport without the short path; ours-http: make_async_client (transport + short path);
    httpx-aiohttp: the third-party transport, when that package is installed.
    """
    from datagen.teacher.transport import AiohttpTransport, make_async_client
    timeout = httpx.Timeout(120.0, connect=10.0)
    alts = {
        "httpx-sharded": lambda: ShardedHttpxClient(base_url, concurrency),
        "aiohttp-transport": lambda: HttpxClient(httpx.AsyncClient(base_url=base_url, timeout=timeout,
                                                           transport=AiohttpTransport(concurrency))),
        "ours-http": lambda: HttpxClient(make_async_client(base_url, {}, concurrency, 120.0)),
    }
    try:
        from httpx_aiohttp import AiohttpTransport as ThirdParty  # not a dependency: measured when installed
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        alts["httpx-aiohttp"] = lambda: HttpxClient(httpx.AsyncClient(base_url=base_url, timeout=timeout,
                                                                  transport=ThirdParty(limits=limits)))
    except ImportError:
        pass
    return alts


# --------------------------------------------------------------------------- the driver

async def _measure(make, concurrency: int, rounds: int, deadline_s: float, stub: Stub) -> dict:
    client = make()
    errors = 0
    texts: dict[int, str] = {}

    async def one(i: int) -> bool:
        nonlocal errors
        try:
            text = await client(i)
        except Exception as e:  # counted and reported, the run goes on
            errors += 1
            if errors <= 3:
                print(f"  error: {type(e).__name__}: {e}", file=sys.stderr)
            return False
        if i < concurrency:
            texts[i] = text
        return True

    try:
        # Warm-up wave: one request per worker opens the connections.
        t0 = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(concurrency)))
        cold_s = time.perf_counter() - t0

        finished: list[list[float]] = [[] for _ in range(concurrency)]  # per worker: when each request ended
        stop_at = time.perf_counter() + deadline_s

        async def worker(w: int) -> None:
            for r in range(rounds):
                if time.perf_counter() > stop_at:
                    return
                if await one(concurrency * (1 + r) + w):
                    finished[w].append(time.perf_counter())

        srv0, cpu0, t1 = stub.cpu_s(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall, cpu, srv1 = time.perf_counter() - t1, time.process_time() - cpu0, stub.cpu_s()
    finally:
        await client.aclose()
    done = sum(map(len, finished))
    ideal = concurrency / LATENCY_S
    # Steady state: each worker's second half of requests, timed from the end of its first half, so
    # every interval holds whole request cycles and the synchronized start (all C requests leave at
    # once, and the burst takes a few rounds to spread) is left out. Needs every worker to get there.
    k = rounds // 2
    steady = None
    if k >= 1 and all(len(f) > k for f in finished):
        steady = sum((len(f) - k) / (f[-1] - f[k - 1]) for f in finished)
    retries = client.retries() if hasattr(client, "retries") else 0
    return {"requests": done, "wall_s": wall, "wall_rps": done / wall, "wall_pct": 100.0 * done / wall / ideal,
            "rps": steady if steady is not None else done / wall, "steady": steady is not None,
            "pct": 100.0 * (steady if steady is not None else done / wall) / ideal,
            "cpu_ms": 1000.0 * cpu / max(done, 1), "cold_pct": 100.0 * concurrency / cold_s / ideal,
            "server_cpu_util": None if srv0 is None or srv1 is None else (srv1 - srv0) / wall,
            "errors": errors, "retries": retries, "texts": texts}


def measure(name: str, make, concurrency: int, rounds: int, deadline_s: float, stub: Stub) -> dict:
    result = asyncio.run(_measure(make, concurrency, rounds, deadline_s, stub))
    stats = stub.stats_and_reset()
    result["max_in_flight"] = stats["max_in_flight"]
    util = "  n/a" if result["server_cpu_util"] is None else f"{100 * result['server_cpu_util']:3.0f}%"
    kind = "steady" if result["steady"] else "  wall"
    print(f"  {name:17s} C={concurrency:4d} {result['requests']:6d} req in {result['wall_s']:5.2f} s: "
          f"{kind} {result['rps']:6.1f}/s {result['pct']:5.1f}%, whole run {result['wall_pct']:5.1f}%, "
          f"warm-up wave {result['cold_pct']:5.1f}% | cpu {result['cpu_ms']:6.3f} ms/req | server cpu {util} | "
          f"in flight {result['max_in_flight']:4d} | errors {result['errors']} retries {result['retries']}",
          file=sys.stderr, flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter baseline deadline")
    ap.add_argument("--concurrency", default="64,256,1024", help="comma-separated in-flight counts")
    ap.add_argument("--rounds", type=int, default=None, help="timed requests per worker (default 12, quick 6)")
    ap.add_argument("--repeat", type=int, default=1, help="measure ours and the ceiling this often, keep the best")
    ap.add_argument("--alternatives", action="store_true",
                    help="also measure the designs transport.py was chosen against (progress lines only)")
    args = ap.parse_args()
    rounds = max(2, args.rounds or (6 if args.quick else 12))
    baseline_deadline = 3.0 if args.quick else 10.0
    levels = [int(c) for c in args.concurrency.split(",")]

    stub = Stub(LATENCY_S)
    results, identical = [], True
    best = lambda runs: max(runs, key=lambda r: r["rps"])  # noqa: E731
    try:
        for c in levels:
            generous = rounds * LATENCY_S * 5 + 30
            ceiling = best([measure("ceiling", lambda: RawClient(stub.base_url), c, rounds, generous, stub)
                            for _ in range(args.repeat)])
            ours = best([measure("ours", lambda: OursClient(stub.base_url, c), c, rounds, generous, stub)
                         for _ in range(args.repeat)])
            base = measure("baseline", lambda: BaselineClient(stub.base_url, c), c, rounds, baseline_deadline, stub)
            if args.alternatives:
                for name, make in alternatives(stub.base_url, c).items():
                    measure(name, make, c, rounds, generous if name != "httpx-sharded" else baseline_deadline * 3, stub)
            same = len(ours["texts"]) == c and all(
                base["texts"].get(i) == t and ceiling["texts"].get(i) == t for i, t in ours["texts"].items())
            identical &= same
            r1 = lambda x: round(x, 1)  # noqa: E731
            results.append({
                "concurrency": c, "ideal_rps": c / LATENCY_S,
                "ours_rps": r1(ours["rps"]), "ours_pct_ideal": r1(ours["pct"]),
                "ours_whole_run_pct_ideal": r1(ours["wall_pct"]), "ours_warmup_wave_pct_ideal": r1(ours["cold_pct"]),
                "ours_cpu_ms_per_req": round(ours["cpu_ms"], 3), "ours_requests": ours["requests"],
                "ours_errors": ours["errors"], "ours_retries": ours["retries"],
                "ours_max_in_flight": ours["max_in_flight"],
                "baseline_rps": r1(base["rps"]), "baseline_pct_ideal": r1(base["pct"]),
                "baseline_pct_is_steady": base["steady"], "baseline_whole_run_pct_ideal": r1(base["wall_pct"]),
                "baseline_cpu_ms_per_req": round(base["cpu_ms"], 3), "baseline_requests": base["requests"],
                "baseline_errors": base["errors"],
                "ceiling_rps": r1(ceiling["rps"]), "ceiling_pct_ideal": r1(ceiling["pct"]),
                "ceiling_whole_run_pct_ideal": r1(ceiling["wall_pct"]),
                "server_cpu_util_during_ours": None if ours["server_cpu_util"] is None
                else round(ours["server_cpu_util"], 2),
            })
    finally:
        stub.stop()

    def met(r: dict) -> bool:
        return (r["ours_pct_ideal"] >= TARGETS.get(r["concurrency"], 0.0) and r["ours_cpu_ms_per_req"] <= CPU_BUDGET_MS
                and r["ours_errors"] == 0)

    print()
    print(f"stub latency {LATENCY_S:.1f} s; per worker a warm-up request then {rounds} timed ones; % of ideal = "
          f"steady state (2nd half of each worker's requests), [whole timed run]; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    hdr = (f"{'C':>5} | {'ours/s':>7} {'%ideal':>6} {'[whole]':>7} {'cpu ms':>6} | {'base/s':>7} {'%ideal':>6} "
           f"{'cpu ms':>6} | {'ceil/s':>7} {'%ideal':>6} {'[whole]':>7} | target")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        target = TARGETS.get(r["concurrency"])
        verdict = f">={target:.0f}% {'ok' if met(r) else 'MISS'}" if target else ("ok" if met(r) else "MISS")
        print(f"{r['concurrency']:>5} | {r['ours_rps']:>7.1f} {r['ours_pct_ideal']:>5.1f}% "
              f"[{r['ours_whole_run_pct_ideal']:>5.1f}%] {r['ours_cpu_ms_per_req']:>6.3f} | "
              f"{r['baseline_rps']:>7.1f} {r['baseline_pct_ideal']:>5.1f}%{'' if r['baseline_pct_is_steady'] else '*'}"
              f"{r['baseline_cpu_ms_per_req']:>6.2f} | {r['ceiling_rps']:>7.1f} {r['ceiling_pct_ideal']:>5.1f}% "
              f"[{r['ceiling_whole_run_pct_ideal']:>5.1f}%] | {verdict}")
    print("* baseline stopped at its deadline before every worker reached steady state: whole-run figure "
          "(it is CPU-bound there, so there is no start-up transient to leave out)")
    print(f"answers identical across clients: {identical}")
    targets_met = all(met(r) for r in results)
    sys.stdout.flush()
    print(json.dumps({"bench": "teacher_throughput", "latency_s": LATENCY_S, "rounds": rounds,
                      "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "results": results, "identical": identical, "targets_met": targets_met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
