"""The `datagen` command. Parses flags and YAML config, starts a flow, shows progress and a summary.

A module per command group (run, curate, inspect, teacher) over one output helper (output.py). Errors a
user can fix (DatagenError) print as one line and exit 2 (1 for an endpoint that stays down); anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import sys

from rich.markup import escape

from datagen.cli import curate, export, inspect, report, run, server, teacher, translate  # noqa: F401  (each registers its commands)
from datagen.cli import output
from datagen.cli.app import app
from datagen.cli.output import console
from datagen.errors import DatagenError

__all__ = ["app", "main"]


def main() -> None:
    """The `datagen` program. Run as the program (the console script, `python -m datagen.cli`) it ends the
    process without Python's teardown of every imported module (see _exit); called from other code it
    raises SystemExit like sys.exit."""
    as_program = sys._getframe(1).f_globals.get("__name__") == "__main__"
    try:
        _main()
    except SystemExit as e:
        if not as_program:
            raise
        _exit(e.code)


def _exit(code) -> None:
    """Leave now: atexit handlers (Prefect's drains, lease release, logging) and a flush, then os._exit.

    Python's own exit then tears down each of ~2,000 imported modules (Prefect, pydantic, scipy): 0.2-0.4 s
    after every command, measured, for nothing the process still needs. A thread that is not a daemon
    still running (a worker pool) gets the normal exit, which joins it; so does a process under a profiler
    or tracer (cProfile writes its report after the program returns)."""
    import atexit
    import threading

    if (sys.getprofile() is not None or sys.gettrace() is not None
            or any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate())):
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:            # sys.exit("message"): printed to stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (`datagen ... | head`): nothing more to say
            pass
    os._exit(status)


def _main() -> None:
    from typer import exceptions as typer_errors
    from typer._click import exceptions as click_errors  # typer vendors click

    try:
        code = app(standalone_mode=False)
    except DatagenError as e:
        console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True, markup=True)
        output.print_pending_hint()
        sys.exit(e.exit_code)
    except click_errors.NoArgsIsHelpError as e:
        print(e.ctx.get_help())
        sys.exit(0)
    except click_errors.ClickException as e:   # a bad flag or value: one line, like our own errors
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        console.print(f"[red]error:[/] {escape(e.format_message())}{hint}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except (typer_errors.Abort, KeyboardInterrupt):
        console.print("[yellow]interrupted[/]: nothing was published", highlight=False)
        output.print_pending_hint()
        sys.exit(130)
    if code == 130:          # click turns Ctrl-C inside a command into its Abort exit code
        console.print("[yellow]interrupted[/]: nothing was published", highlight=False)
        output.print_pending_hint()
    sys.exit(code if isinstance(code, int) else 0)
