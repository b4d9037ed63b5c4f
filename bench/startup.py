"""Start-up cost of a small command: `datagen dedup` of a 50-line file, side by side:

  ephemeral   Prefect's temporary server, started and stopped by every command (DATAGEN_PREFECT_SERVER=ephemeral)
  cold        the first command with the background server: it starts the server
  warm        later commands: they reuse it

plus `datagen --version` (Python and the CLI's imports only). Runs in a temporary DATAGEN_HOME and stops
the server it started. Prints each run's wall time and the warm/ephemeral ratio; no assertion.

    .venv/bin/python bench/startup.py [--warm 5] [--ephemeral 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "datagen.cli", *args], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=5, help="warm runs (default 5)")
    ap.add_argument("--ephemeral", type=int, default=2, help="runs with a temporary server each (default 2)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="datagen-startup-"))
    data = tmp / "notes.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Explain idea {i % 40} briefly.", "output": f"Idea {i % 40}."})
                            + "\n" for i in range(50)))
    env = {**os.environ, "DATAGEN_HOME": str(tmp / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for key in ("PREFECT_API_URL", "DATAGEN_PREFECT_SERVER"):
        env.pop(key, None)
    rows: list[tuple[str, float]] = []
    n = 0

    def dedup(label: str, extra: dict[str, str] | None = None) -> float:
        nonlocal n
        n += 1
        wall, _ = timed(["dedup", str(data), "--out", str(tmp / f"out{n}")], {**env, **(extra or {})})
        rows.append((label, wall))
        print(f"  {label:<10} {wall:6.2f} s", flush=True)
        return wall

    print("datagen dedup, 50 lines (wall time of the whole command)")
    version, _ = timed(["--version"], env)
    rows.append(("--version", version))
    print(f"  {'--version':<10} {version:6.2f} s  (imports only)")
    eph = [dedup("ephemeral", {"DATAGEN_PREFECT_SERVER": "ephemeral"}) for _ in range(a.ephemeral)]
    try:
        cold = dedup("cold")
        warm = [dedup("warm") for _ in range(a.warm)]
    finally:
        subprocess.run([sys.executable, "-m", "datagen.cli", "server", "stop"], env=env, cwd=REPO,
                       capture_output=True, timeout=120)
    print()
    print(f"{'mode':<10} {'runs':>4} {'median s':>9} {'min s':>7}")
    for label, xs in (("ephemeral", eph), ("cold", [cold]), ("warm", warm)):
        print(f"{label:<10} {len(xs):>4} {statistics.median(xs):>9.2f} {min(xs):>7.2f}")
    print(f"warm / ephemeral (median): {statistics.median(warm) / statistics.median(eph):.2f}x the time "
          f"({statistics.median(eph) / statistics.median(warm):.1f}x faster); cold pays the server's start once")


if __name__ == "__main__":
    main()
