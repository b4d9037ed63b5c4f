"""Prefect's console logging, made to fit a CLI: user-fixable errors are one line, not a traceback."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from prefect.logging import configuration

from datagen.errors import DatagenError


INTERRUPTED = "Execution was cancelled by the runtime environment"


def _user_error_markers() -> set[str]:
    todo, names = [DatagenError], set()
    while todo:
        cls = todo.pop()
        names.update((cls.__name__ + ":", cls.__name__ + "("))
        todo.extend(cls.__subclasses__())
    return names


class HideUserErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for errors the user can fix, the CLI's
    one-line message says it all. The full record still reaches Prefect's API (and UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (DatagenError, KeyboardInterrupt)):
            return False
        if record.levelno >= logging.ERROR and INTERRUPTED in record.getMessage():
            return False     # Ctrl-C: the CLI says what was saved and how to resume
        if record.levelno >= logging.ERROR:
            msg = record.getMessage()
            return not any(marker in msg for marker in _user_error_markers())
        return True


def quiet_user_errors() -> None:
    """Filter the console handler of Prefect's logging. `import prefect` sets logging up already; a second
    setup here cost ~0.1 s of every command (it reads and templates the logging YAML again)."""
    if not configuration.PROCESS_LOGGING_CONFIG:
        configuration.setup_logging()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, HideUserErrors) for f in handler.filters):
            handler.addFilter(HideUserErrors())


@contextlib.contextmanager
def cli_flow_settings() -> Iterator[None]:
    """Prefect settings for a flow the CLI runs in its own process.

    Flow-run heartbeats are off unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set: Prefect's heartbeat
    thread sleeps in 1 s steps and the engine joins it when the flow ends, which cost 0.3-1 s of a 1 s
    `datagen dedup` (measured). The CLI's own process reports a crash as an error line; heartbeats only
    matter to a server automation that marks silent runs crashed, and whoever set one up sets that
    variable. Flows that Prefect workers start (deployments) do not pass through here."""
    if os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "").strip():
        yield
        return
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield


def wait_until_recorded(flow_run_id: Any, last_task: str = "publish", timeout_s: float = 20.0) -> bool:
    """Block until the Prefect server has recorded the run's final task run.

    Task runs reach the server as events, recorded one by one after the flow has returned; a
    temporary server stopped at exit while that backlog is written prints pages of tracebacks
    (measured: ~150 lines after a one-second run). Events are recorded in order, so once the last
    task's final state is in, so is everything before it.

    A server that outlives the command (PREFECT_API_URL: the user's, or datagen's background one) records
    the backlog after the command exits without harm: there, the events are sent and not waited for
    (0.1-0.25 s of a small command, measured)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    try:
        EventsWorker.drain_all(timeout=timeout_s)
    except Exception:   # draining is best effort; the wait below still bounds what we lose
        pass
    if os.environ.get("PREFECT_API_URL", "").strip():
        return True
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if any(r.name.startswith(last_task + "-") and r.state and r.state.is_final() for r in runs):
                return True
            time.sleep(0.1)
    return False
