"""What every command prints: one `error:` line, a live progress line (or plain log lines without a
terminal), the summary table, and after a failure or Ctrl-C what is saved and how to resume."""
from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from datagen import progress
from datagen.errors import DatagenError

console = Console(stderr=True)


def prefect_defaults() -> None:
    """Offline-friendly Prefect settings and the Prefect API to use, set before Prefect is imported;
    the user's own win."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # Prefect waits 20 s for its temporary server; on a loaded 2-core machine it once took longer and
    # a run failed before it started (measured in CI while a 256-concurrency bench ran alongside).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The user's server (PREFECT_API_URL), else datagen's background one, started once and reused
    # (datagen/flows/server.py): a temporary server per command would cost ~10 s of every small command.
    from datagen.flows.server import ensure_api
    ensure_api(say=lambda text: console.print(f"[dim]{text}[/]", highlight=False, soft_wrap=True))


def progress_view(p: progress.Progress, started: float) -> Table:
    t = p.totals()
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{p.stage}[/] round {p.round}",
        f"instructions [bold green]{p.accepted}[/]/{p.target}" if p.target else f"kept [bold green]{p.accepted:,}[/]",
        f"requests {t['requests']}",
        _flight(p),
        f"cache hits {t['cache_hits']}",
        f"retries {t['retries']}",
        f"tokens {t['tokens']:,}",
        f"{time.monotonic() - started:5.0f} s",
    )
    return table


def _flight(p: progress.Progress) -> str:
    f = p.in_flight()
    rate = p.requests_per_s(time.monotonic())
    return (f"in flight {f[0]}/{f[1]}, " if f else "") + f"{rate:.1f} req/s"


def run_with_progress(start, target: int = 0, cache: str | None = None) -> None:
    """Run a flow under a live progress line (a plain log line every DATAGEN_PROGRESS_INTERVAL_S
    seconds without a terminal), then print the summary table and the version's path. A run that
    fails or is interrupted after it got answers says how many are cached and that rerunning resumes."""
    interval = plain_progress_interval()
    prog = progress.install(progress.Progress(target=target))
    started = time.monotonic()
    before = _cached_answers(cache)
    try:
        if console.is_terminal:
            with Live(get_renderable=lambda: progress_view(prog, started), console=console,
                      refresh_per_second=4, transient=True, redirect_stdout=False, redirect_stderr=False):
                result = _run_and_settle(start)
        else:
            with progress.PlainReporter(prog, started, _plain_line, interval):
                result = _run_and_settle(start)
    except (DatagenError, KeyboardInterrupt) as e:
        new = _cached_answers(cache) - before
        if new > 0:
            global pending_hint
            pending_hint = (f"{new:,} teacher answer{'s' if new != 1 else ''} from this run "
                            f"{'are' if new != 1 else 'is'} cached in {cache}; run the same command again to "
                            "resume (cached answers cost no calls)")   # printed by main() after the error line
        raise e
    console.print(summary(result, time.monotonic() - started))
    print(result["path"])


def plain_progress_interval() -> float:
    """DATAGEN_PROGRESS_INTERVAL_S, checked: 0 or a typo would flood a log or crash every command."""
    import math
    text = os.environ.get("DATAGEN_PROGRESS_INTERVAL_S", "").strip()
    if not text:
        return 15.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 3600:
        raise DatagenError(f"DATAGEN_PROGRESS_INTERVAL_S: expected seconds between 0.1 and 3600, got '{text}'")
    return value


pending_hint: str | None = None


def _run_and_settle(start) -> dict[str, Any]:
    from datagen.flows.console import cli_flow_settings, wait_until_recorded

    with cli_flow_settings():
        result = start()
    if result.get("flow_run_id"):
        wait_until_recorded(result["flow_run_id"])
    return result


def _plain_line(p: progress.Progress, started: float) -> str:
    t = p.totals()
    done = f"instructions {p.accepted}/{p.target}" if p.target else f"kept {p.accepted:,}"
    return (f"progress: {p.stage} round {p.round}, {done}, requests {t['requests']} ({_flight(p)}), cache hits {t['cache_hits']}, "
            f"retries {t['retries']}{_retry_detail(p)}, tokens {t['tokens']:,}, {time.monotonic() - started:.0f} s")


def _retry_detail(p: progress.Progress) -> str:
    causes: dict[str, int] = {}
    for u in p.usages:
        for cause, n in u.retries.items():
            causes[cause] = causes.get(cause, 0) + n
    return f" ({', '.join(f'{c} {n}' for c, n in sorted(causes.items()))})" if causes else ""


def _cached_answers(cache: str | None) -> int:
    import sqlite3

    from datagen.teacher.cache import cached_answer_count
    try:
        return cached_answer_count(cache)
    except sqlite3.Error:
        return 0


def summary(result: dict[str, Any], wall: float) -> Table:
    m = result["manifest"]
    c = m["counts"]
    table = Table(title=f"datagen {m['recipe']}: {m['dataset']} {m['version']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if "in" in c:
        table.add_row("kept", f"{c['records']:,} of {c['in']:,} records")
    elif "inputs" in c:
        table.add_row("kept", f"{c['records']:,} records from {c['inputs']:,} inputs")
    else:
        table.add_row("kept", f"{c['instructions']} instructions, {c['records']} records")
    for stage, reasons in m["rejected"].items():
        table.add_row(f"rejected ({stage})", ", ".join(f"{r} {n}" for r, n in reasons.items()))
    evol = m.get("evol")
    if evol:
        table.add_row("evol pass rate", ", ".join(f"{op} {r['passed']}/{r['attempts']}"
                                                  for op, r in evol["per_operation"].items()))
        table.add_row("evol per round", ", ".join(f"round {k} {r['passed']}/{r['attempts']}"
                                                  for k, r in evol["per_round"].items()))
    for stage, sc in (c.get("per_stage") or {}).items():
        if isinstance(sc, dict) and "judged" in sc and sc.get("mode") != "off":
            sig = ", ".join(f"{k} {n}" for k, n in sc.get("signals", {}).items())
            table.add_row(f"judge ({stage})", f"{sc['judged']} of {sc.get('records', 0)} judged ({sc['mode']}"
                          + (f"; signals: {sig}" if sig else "") + f"), {sc.get('below_min_score', 0)} below "
                          f"{sc.get('min_score')}")
    if m.get("parent"):
        table.add_row("parent", m["parent"])
    for u in m["usage"]:
        table.add_row(f"{u['role']} usage",
                      f"{u['requests']} requests, {u['cache_hits']} cache hits, "
                      f"{sum(u['retries'].values())} retries, {u['prompt_tokens']:,} in + "
                      f"{u['completion_tokens']:,} out tokens"
                      + (f", ${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else ""))
    if m.get("partial"):
        why = m.get("partial_reason") or m["partial"]
        table.add_row("[yellow]partial[/]", f"stopped early ({why}): this version holds what was finished")
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("published", result["path"])
    return table


def print_pending_hint() -> None:
    if pending_hint:
        console.print(pending_hint, highlight=False, soft_wrap=True)
