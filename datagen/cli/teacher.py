"""`datagen teacher serve`: the embedded llama.cpp teacher on its own, for other tools to use."""
from __future__ import annotations

import time
from typing import Optional

import typer

from datagen.cli.app import teacher_app
from datagen.cli.output import console
from datagen.errors import DatagenError


@teacher_app.command("serve")
def teacher_serve(
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Port on 127.0.0.1 (default: a free one)."),
) -> None:
    """Run the embedded llama.cpp teacher (SmolLM2-135M-Instruct) in the foreground; Ctrl-C stops it."""
    import socket

    from datagen.teacher.embedded import MODEL_ALIAS, EmbeddedTeacher

    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as e:
                raise DatagenError(f"--port: cannot listen on 127.0.0.1:{port} ({e.strerror or e}); "
                                   "choose another port or leave --port out") from None

    server = EmbeddedTeacher(port=port)
    try:
        url = server.start()
        print(url, flush=True)
        console.print(f"serving {MODEL_ALIAS} (OpenAI-compatible) at {url}; use --base-url {url} "
                      f"--model {MODEL_ALIAS}; Ctrl-C to stop")
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
        if server.proc is not None:
            raise DatagenError(f"embedded teacher: llama.cpp server exited with code {server.proc.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
