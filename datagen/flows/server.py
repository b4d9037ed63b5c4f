"""The Prefect server a datagen command talks to: the user's (PREFECT_API_URL), else one local server
that datagen starts in the background on first use, reuses, and stops after an idle period.

Why: every flow needs a Prefect API. Prefect's own answer without one, a temporary server per process,
costs ~10 s of a 13 s `datagen dedup` of 50 lines (measured); a running server is a few hundred
milliseconds away. So the first command starts one (`prefect server start` on 127.0.0.1, its own
PREFECT_HOME under the state folder) under a small supervisor process, and later commands find it
through `server.json` and use it. The supervisor stops the server when no command has held a lease
for the idle period (DATAGEN_SERVER_IDLE_MINUTES, default 30; 0 = never); `datagen server stop` stops
it at once. A command holds a lease (a file named after its PID) while it runs, so a long run is never
left without its server. DATAGEN_PREFECT_SERVER=ephemeral keeps Prefect's temporary server instead.

Nothing here imports Prefect: the server is a child process, and the environment is set before the
CLI imports Prefect (its settings are read once).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError

STATE_FILE = "server.json"
DEFAULT_IDLE_MINUTES = 30.0
START_TIMEOUT_S = 180.0


def state_dir() -> Path:
    """DATAGEN_SERVER_DIR, else ~/.datagen/server. (Not under DATAGEN_HOME: that names the repository a
    Prefect worker runs deployments from, and the server's database does not belong in a checkout.)"""
    text = os.environ.get("DATAGEN_SERVER_DIR", "").strip()
    return Path(text).expanduser() if text else Path.home() / ".datagen" / "server"


def idle_seconds() -> float:
    text = os.environ.get("DATAGEN_SERVER_IDLE_MINUTES", "").strip()
    if not text:
        return DEFAULT_IDLE_MINUTES * 60
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 7 * 24 * 60:
        raise DatagenError(f"DATAGEN_SERVER_IDLE_MINUTES: expected minutes between 0 (never stop) and 10080, got '{text}'")
    return value * 60


@dataclass
class ServerInfo:
    pid: int            # the supervisor's
    server_pid: int     # `prefect server start`'s
    port: int
    url: str            # the API URL (…/api)
    home: str           # the server's PREFECT_HOME
    log: str
    idle_s: float
    started: float

    @classmethod
    def read(cls, folder: Path) -> "ServerInfo | None":
        try:
            data = json.loads((folder / STATE_FILE).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, folder: Path) -> None:
        tmp = folder / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        os.replace(tmp, folder / STATE_FILE)


def ours(pid: int, marker: str) -> bool:
    """`pid` is alive and its command line holds `marker`: a state file left from before a reboot names
    PIDs that may now belong to anything, and those are never signalled."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:
        return True          # no /proc to ask (not Linux): trust the PID
    return marker in cmdline


SUPERVISOR = "datagen.flows.server supervise"
SERVER = "prefect server start"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The server's /health answers 200 (the standard library's client: httpx is the teacher's, DESIGN §1)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def running(folder: Path | None = None) -> ServerInfo | None:
    """The background server, when its supervisor is alive and it answers."""
    info = ServerInfo.read(folder or state_dir())
    if info is None or not ours(info.pid, SUPERVISOR) or not healthy(info.url):
        return None
    return info


@contextlib.contextmanager
def locked(folder: Path, wait: bool = True):
    """The state folder's lock: held to start, stop or take a lease on the server. Yields False (and holds
    nothing) when `wait` is off and another process holds it."""
    import fcntl
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_api(say=None) -> str | None:
    """Point this process at a Prefect API before Prefect is imported; returns its URL (None: Prefect's
    temporary server). A background server is started when none runs (`say` gets one line about it)."""
    if os.environ.get("PREFECT_API_URL", "").strip():
        return os.environ["PREFECT_API_URL"]
    mode = os.environ.get("DATAGEN_PREFECT_SERVER", "background").strip() or "background"
    if mode == "ephemeral":
        return None
    if mode != "background":
        raise DatagenError(f"DATAGEN_PREFECT_SERVER: expected 'background' or 'ephemeral', got '{mode}'")
    info = ensure_running(state_dir(), idle_seconds(), say, lease=True)
    os.environ["PREFECT_API_URL"] = info.url
    return info.url


def ensure_running(folder: Path, idle_s: float, say=None, lease: bool = False) -> ServerInfo:
    """The running background server, started when none answers (under the state lock; with `lease`, this
    command holds it from before the lock is released, so no idle stop comes in between)."""
    with locked(folder):
        info = running(folder)
        if info is None:
            _stop_unanswering(folder)
            if say is not None:
                say("starting a local Prefect server for datagen (first use; later commands reuse it; it stops "
                    f"after {_idle_text(idle_s)}, or with `datagen server stop`)")
            info = start(folder, idle_s)
        if lease:
            _lease(folder)
    return info


def _stop_unanswering(folder: Path) -> None:
    """A supervisor that is alive but whose server did not answer: give a busy server a few more seconds,
    then stop it, so that a new one does not share its database folder."""
    info = ServerInfo.read(folder)
    if info is None:
        return
    if ours(info.pid, SUPERVISOR):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if healthy(info.url, timeout=3.0):
                return
            time.sleep(0.5)
    stop(folder)        # also a server left behind by a supervisor that was killed


def _idle_text(idle_s: float) -> str:
    return "no idle stop" if idle_s == 0 else f"{idle_s / 60:g} min idle"


def _lease(folder: Path) -> None:
    """Held while this command runs: the supervisor does not stop the server under a live lease."""
    leases = folder / "leases"
    leases.mkdir(exist_ok=True)
    mine = leases / str(os.getpid())
    mine.touch()
    (folder / "last_used").touch()

    def release() -> None:
        with contextlib.suppress(OSError):
            mine.unlink()
        with contextlib.suppress(OSError):
            (folder / "last_used").touch()

    atexit.register(release)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, idle_s: float) -> ServerInfo:
    """Start the supervisor (which starts the server) detached from this process; wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    with contextlib.suppress(OSError):
        (folder / STATE_FILE).unlink()
    (folder / "last_used").touch()
    port = _free_port()
    with open(log, "ab") as out:
        # The supervisor imports this very datagen (a checkout's, say), whatever its working folder.
        code = "import sys; sys.path.insert(0, sys.argv[1]); from datagen.flows.server import main; main(sys.argv[2:])"
        root = str(Path(__file__).resolve().parents[2])
        sup = subprocess.Popen([sys.executable, "-c", code, root, *SUPERVISOR.split(), str(folder), str(port),
                                str(idle_s)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True, env=_server_env(folder), close_fds=True, cwd=folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = ServerInfo.read(folder)
        if info is not None and info.pid == sup.pid and healthy(info.url, timeout=1.0):
            return info
        if sup.poll() is not None:
            raise DatagenError(f"the local Prefect server did not start (see {log}); set PREFECT_API_URL to a "
                               "running server, or DATAGEN_PREFECT_SERVER=ephemeral")
        time.sleep(0.25)
    stop(folder)
    raise DatagenError(f"the local Prefect server did not answer within {START_TIMEOUT_S:.0f} s (see {log}); set "
                       "PREFECT_API_URL to a running server, or DATAGEN_PREFECT_SERVER=ephemeral")


def _server_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "DATAGEN_TEACHER", "PREFECT_API_")) and not k.endswith("API_KEY")}
    env.update(PREFECT_HOME=str(folder / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL="")
    return env


def stop(folder: Path | None = None, timeout_s: float = 30.0) -> ServerInfo | None:
    """Stop the background server (its supervisor stops it); returns what was running, None if nothing."""
    folder = folder or state_dir()
    info = ServerInfo.read(folder)
    if info is None:
        return None
    pids = [pid for pid, marker in ((info.pid, SUPERVISOR), (info.server_pid, SERVER)) if ours(pid, marker)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    current = ServerInfo.read(folder)
    if current is not None and current.pid == info.pid:
        with contextlib.suppress(OSError):
            (folder / STATE_FILE).unlink()
    return info if pids else None


def live_leases(folder: Path) -> list[int]:
    out = []
    for p in (folder / "leases").glob("*") if (folder / "leases").is_dir() else ():
        try:
            pid = int(p.name)
        except ValueError:
            continue
        if alive(pid):
            out.append(pid)
        else:
            with contextlib.suppress(OSError):
                p.unlink()       # a command that was killed: its lease is stale
    return out


def supervise(folder: Path, port: int, idle_s: float, clock=time.time, check_s: float | None = None) -> int:
    """The supervisor's loop: run the server, stop it when idle or told to (SIGTERM)."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stopping.append("SIGINT"))
    env = {**os.environ}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                              preexec_fn=_die_with_parent)
    info = ServerInfo(pid=os.getpid(), server_pid=server.pid, port=port, url=f"http://127.0.0.1:{port}/api",
                      home=env["PREFECT_HOME"], log=str(folder / "server.log"), idle_s=idle_s, started=clock())
    info.write(folder)
    _say(f"supervisor {os.getpid()}: prefect server {server.pid} on {info.url}, idle stop {_idle_text(idle_s)}")
    check_s = check_s or (5.0 if idle_s == 0 else max(0.5, min(10.0, idle_s / 4)))
    why = ""
    while True:
        if stopping:
            why = f"stop requested ({stopping[0]})"
            break
        if server.poll() is not None:
            why = f"the server exited with code {server.returncode}"
            break
        if idle_s > 0:
            # Under the lock (never waiting for it: whoever holds it is starting a command or stopping
            # us), so a command cannot take its lease between this check and the stop.
            with locked(folder, wait=False) as have:
                if have:
                    why = _idle_reason(folder, idle_s, info, clock)
                    if why:
                        _say(f"stopping: {why}")
                        _shut(server, folder)
                        _say("stopped")
                        return 0
        end = time.monotonic() + check_s
        while not stopping and time.monotonic() < end:     # SIGTERM does not cut a sleep short
            time.sleep(0.2)
    _say(f"stopping: {why}")
    _shut(server, folder)
    _say("stopped")
    return 0


def _die_with_parent() -> None:
    """In the server process before it runs (Linux): SIGTERM it when the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def _idle_reason(folder: Path, idle_s: float, info: ServerInfo, clock) -> str:
    leases = live_leases(folder)
    try:
        last = (folder / "last_used").stat().st_mtime
    except OSError:
        last = info.started
    quiet = clock() - last
    if not leases and quiet >= idle_s:
        return f"idle for {quiet / 60:.1f} min"
    _say(f"idle check: {len(leases)} lease(s), last use {quiet:.0f} s ago", debug=True)
    return ""


def _shut(server: subprocess.Popen, folder: Path) -> None:
    """Stop the server process and forget it (state file gone: the next command starts a new one)."""
    current = ServerInfo.read(folder)
    if current is not None and current.pid == os.getpid():
        with contextlib.suppress(OSError):
            (folder / STATE_FILE).unlink()
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _say(text: str, debug: bool = False) -> None:
    if debug and not os.environ.get("DATAGEN_SERVER_DEBUG"):
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} datagen-server: {text}", flush=True)


def main(argv: list[str]) -> None:
    """`[datagen.flows.server] supervise FOLDER PORT IDLE_SECONDS` (the marker first, as start() passes it)."""
    if argv[:1] == ["datagen.flows.server"]:
        argv = argv[1:]
    if len(argv) == 4 and argv[0] == "supervise":
        sys.exit(supervise(Path(argv[1]), int(argv[2]), float(argv[3])))
    sys.exit("usage: python -m datagen.flows.server supervise FOLDER PORT IDLE_SECONDS")


if __name__ == "__main__":
    main(sys.argv[1:])
