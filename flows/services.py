"""Start and stop the local Prefect server (SQLite) and the process serving the deployments, by PID.

State lives under the project (``.work/prefect``), never in the user's home. From the project directory,
with the project's virtualenv (`make serve` and `make stop` run exactly these):

    .venv/bin/python -m flows.services start [--port 4200]   # prints the PREFECT_API_URL to export
    .venv/bin/python -m flows.services stop

The served flows inherit this command's environment, read once at start: export $TOP_DATA_DIR before it. A
relative $TOP_DATA_DIR is taken relative to the directory this command runs in and handed on absolute, since
the flows run their stages in clones under .work/runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from top.data.paths import DATA_DIR_ENV, absolute_env, naming

PROJECT_DIR = Path(__file__).resolve().parents[1]
STATE_DIR = PROJECT_DIR / ".work" / "prefect"
SERVICES = ("server", "serve")
DEPLOYMENTS = ("top/compress", "top-sweep/sweep")


def prefect_env(port: int, state_dir: Path = STATE_DIR) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(state_dir),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def served_env(port: int, state_dir: Path = STATE_DIR, base: Path | None = None) -> dict[str, str]:
    """The environment of the server and the serving process: ``prefect_env`` with its path variables
    ($TOP_DATA_DIR, ...) made absolute relative to ``base`` (default: the working directory)."""
    return absolute_env(prefect_env(port, state_dir), base or Path.cwd())


def data_root_note(env: dict[str, str]) -> str:
    """One line on where served runs will read their data, and whether it is there."""
    value = env.get(DATA_DIR_ENV)
    if not value:
        return f"${DATA_DIR_ENV} is not set: served runs read GLUE from the Hugging Face hub"
    path = Path(value)
    named = naming(value, path, f"${DATA_DIR_ENV}", env)
    if not path.is_dir():
        return f"warning: data directory {named} does not exist: runs will fail at their first stage"
    return f"served runs read data from {named}"


def start(port: int, state_dir: Path = STATE_DIR, timeout: float = 120.0, base: Path | None = None) -> dict[str, int]:
    """Start the server, wait until it answers, then start serving and wait until every deployment is registered,
    so that a `prefect deployment run` issued right after this returns cannot miss it; return both PIDs.
    Relative paths in the environment are resolved against ``base`` (default: the working directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        if process_alive(_read_pid(state_dir, service)):
            raise SystemExit(f"{service} is already running (pid {_read_pid(state_dir, service)}); stop it first")
    env = served_env(port, state_dir, base)
    pids = {}
    commands = {
        "server": [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        "serve": [sys.executable, "-m", "flows.serve"],
    }
    for service in SERVICES:
        log = (state_dir / f"{service}.log").open("w")
        # Its own process group (start_new_session): stop() signals the whole group, so children (uvicorn, flow
        # runs) go too.
        process = subprocess.Popen(
            commands[service], cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        pids[service] = process.pid
        (state_dir / f"{service}.pid").write_text(f"{process.pid}\n")
        if service == "server":
            _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/api/health"), process, service, timeout)
        else:
            for deployment in DEPLOYMENTS:
                url = f"http://127.0.0.1:{port}/api/deployments/name/{deployment}"
                _wait_until(lambda url=url: _answers(url), process, f"{service} ({deployment})", timeout)
    return pids


def stop(state_dir: Path = STATE_DIR, timeout: float = 30.0) -> None:
    """SIGTERM the serving process's group, then the server's; SIGKILL what is still alive after ``timeout``."""
    for service in reversed(SERVICES):
        pid = _read_pid(state_dir, service)
        if process_alive(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        (state_dir / f"{service}.pid").unlink(missing_ok=True)


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
    return False


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float) -> None:
    """Poll ``ready`` until it holds; fail naming ``what`` (and its log) if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before it was ready; see its log")
        if ready():
            return
        time.sleep(0.25)
    raise SystemExit(f"{what} was not ready within {timeout:.0f} s; see its log")


def _read_pid(state_dir: Path, service: str) -> int | None:
    path = state_dir / f"{service}.pid"
    return int(path.read_text()) if path.is_file() else None


def process_alive(pid: int | None) -> bool:
    """Running and not a zombie (an exited child nobody has reaped yet counts as gone)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--port", type=int, default=4200)
    arguments = parser.parse_args()
    if arguments.action == "start":
        started = time.perf_counter()
        pids = start(arguments.port)
        print(f"server pid {pids['server']}, serve pid {pids['serve']} ({time.perf_counter() - started:.1f} s)")
        print(data_root_note(served_env(arguments.port)))
        activate = Path(sys.executable).parent / "activate"
        if activate.is_file():
            print(f". {activate}   # prefect and dvc on PATH")
        print(f"export PREFECT_API_URL=http://127.0.0.1:{arguments.port}/api")
    else:
        stop()
        print("stopped")


if __name__ == "__main__":
    main()
