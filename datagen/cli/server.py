"""`datagen server`: the background Prefect server datagen starts on first use (datagen/flows/server.py)."""
from __future__ import annotations

import os

import typer

from datagen.cli.app import app
from datagen.cli.output import console

server_app = typer.Typer(help="The local Prefect server datagen starts in the background on first use and reuses.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(server_app, name="server")


@server_app.command("status")
def status() -> None:
    """Say whether the background server runs, its API URL, and when it stops."""
    from datagen.flows import server

    info = server.running()
    if os.environ.get("PREFECT_API_URL", "").strip():
        console.print(f"PREFECT_API_URL is set: datagen uses {os.environ['PREFECT_API_URL']}, not a server of its own",
                      highlight=False, soft_wrap=True)
    if info is None:
        console.print(f"no background server runs (state folder {server.state_dir()})", highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    leases = server.live_leases(server.state_dir())
    idle = "never stops when idle" if info.idle_s == 0 else f"stops after {info.idle_s / 60:g} min without a command"
    console.print(f"running: {info.url} (supervisor pid {info.pid}, server pid {info.server_pid}); {len(leases)} "
                  f"command(s) using it; {idle}; log {info.log}", highlight=False, soft_wrap=True)
    print(info.url)


@server_app.command("start")
def start() -> None:
    """Start the background server now (commands start it on first use anyway); print its API URL."""
    from datagen.flows import server

    info = server.ensure_running(server.state_dir(), server.idle_seconds(),
                                 say=lambda text: console.print(text, highlight=False, soft_wrap=True))
    console.print(f"running: {info.url}; point Prefect workers or the UI at it with "
                  f"`export PREFECT_API_URL={info.url}`", highlight=False, soft_wrap=True)
    print(info.url)


@server_app.command("stop")
def stop() -> None:
    """Stop the background server (the next command starts a new one)."""
    from datagen.flows import server

    folder = server.state_dir()
    with server.locked(folder):
        info = server.stop(folder)
    if info is None:
        console.print("no background server to stop", highlight=False)
        return
    console.print(f"stopped the Prefect server at {info.url} (pid {info.server_pid})", highlight=False)
