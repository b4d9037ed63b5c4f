"""The `datagen` command. Parses flags and YAML config, starts a flow, shows progress and a summary.

A module per command group (run, curate, inspect, teacher) over one output helper (output.py). Errors a
user can fix (DatagenError) print as one line and exit 2 (1 for an endpoint that stays down); anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

from rich.markup import escape

from datagen.cli import curate, export, inspect, report, run, server, teacher, translate  # noqa: F401  (each registers its commands)
from datagen.cli import output
from datagen.cli.app import app
from datagen.cli.output import console
from datagen.errors import DatagenError

__all__ = ["app", "main"]


def main() -> None:
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
