"""What a test hands the processes it starts (servers, workers, consumers): a free port, the test
database as a URL a second process can open, and the Procfile's own command lines, started,
awaited and stopped as honcho would."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database, as a URL a second process can open."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def procfile_commands() -> dict[str, str]:
    """The Procfile's command lines, by process name."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def procfile_start(name: str, *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The Procfile's process `name`, through a shell as honcho runs it (its variables, such as
    PORT, are expanded), in a process group of its own, its output in `log_path`."""
    with log_path.open("w") as log:
        return subprocess.Popen(  # noqa: S603 - our own Procfile
            ["/bin/sh", "-c", procfile_commands()[name]], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_answering(
    url: str, *, proc: subprocess.Popen, log_path: Path, accept: Callable[[int], bool] = lambda status: status == 200
) -> None:
    """Wait until `url` answers with a status `accept`s (a loaded two-core machine boots Django
    slowly: up to 90 s); fail with the process's log if it exits or never answers."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            if accept(requests.get(url, timeout=2).status_code):
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered:\n" + log_path.read_text()[-3000:])


def processes_stop(procs: Iterable[subprocess.Popen]) -> None:
    """Stop each process's whole group (TERM, then KILL after 15 s) and wait until every group has
    gone, not only its shell: a server still shutting down holds database connections the test's
    teardown flush would deadlock with."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for proc in procs:
        _group_gone(proc.pid)


def _group_gone(pgid: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
