"""What the benchmarks share: scratch databases, subprocesses, waiting for a server, wrk and its figures."""

import gc
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dj_database_url
import psycopg
import requests
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


# --- Databases ------------------------------------------------------------------------------


def _server_connection(db: dict) -> psycopg.Connection:
    """An autocommit connection to the `postgres` database on the server of `db` (a parsed URL)."""
    params = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"], "dbname": "postgres"}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    return psycopg.connect(**params, autocommit=True)


def ensure_database(*, url: str) -> None:
    """Create the PostgreSQL database named in `url` unless it exists (other engines are left alone)."""
    db = dj_database_url.parse(url)
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    with _server_connection(db) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            print(f"created database {db['NAME']}")


def recreate_database(*, url: str) -> None:
    """Drop the PostgreSQL database named in `url`, closing its connections, and create it empty."""
    db = dj_database_url.parse(url)
    with _server_connection(db) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db["NAME"])))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))


def demo_project_ready(*, env: dict[str, str]) -> str:
    """Migrate the database `env` names, create the demo project there and lift its quota (a
    benchmark measures the server, not the rate limit); returns its ingest key."""
    for args in (["migrate", "--noinput"], ["kaizen_demo"]):
        command = [sys.executable, "manage.py", *args]
        subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE healing_project SET rate_limit_per_minute = 1000000000")
        return conn.execute("SELECT public_key FROM healing_projectkey WHERE is_active").fetchone()[0]


# --- Processes ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Processes:
    """Subprocesses started in the repository root, each in its own process group, with <name>.log in `logs`."""

    logs: Path
    running: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, *, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start `argv` as `name`, with `env` as its whole environment (default: this process's)."""
        with self.log_path(name=name).open("w") as log:
            self.running[name] = subprocess.Popen(  # noqa: S603 - our own programs, our own arguments
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log_path(self, *, name: str) -> Path:
        """The file that holds the output of the process `name`."""
        return self.logs / f"{name}.log"

    def check(self, *, name: str) -> None:
        """Exit with a pointer to its log if the process `name` has already ended."""
        if self.running[name].poll() is not None:
            raise SystemExit(f"{name} exited early; see {self.log_path(name=name)}")

    def stop(self, *, name: str, timeout: float = 20.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL for whatever is left of the process group."""
        proc = self.running[name]
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            del self.running[name]

    def stop_all(self) -> None:
        """Stop every process still running, in the order they were started."""
        for name in list(self.running):
            self.stop(name=name)


def wait_http(*, url: str, procs: Processes, name: str, timeout: float = 60.0) -> None:
    """Wait until `url` answers 200; exit if the process `name` ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check(name=name)
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{name} did not answer {url} within {timeout:.0f} s; see {procs.log_path(name=name)}")


def wait_worker(*, procs: Processes, name: str, timeout: float = 60.0) -> None:
    """Wait until the Celery worker started as `name` logs that it is ready; exit if it ends first
    or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check(name=name)
        if " ready." in procs.log_path(name=name).read_text(errors="replace"):  # "critical.4242@host ready."
            return
        time.sleep(0.2)
    raise SystemExit(f"worker {name} was not ready after {timeout:.0f} s; see {procs.log_path(name=name)}")


# --- Web servers ----------------------------------------------------------------------------

SERVERS = ("granian", "gunicorn")


def procfile_command(*, name: str) -> str:
    """The command line of the Procfile's process `name` (what `make run` and production start)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name and not key.startswith("#"):
            return command.strip()
    raise SystemExit(f"no {name}: line in the Procfile")


def procfile_argv(*, name: str, extra: str = "") -> list[str]:
    """The Procfile's process `name` as honcho runs it: through a shell (its variables, such as
    PORT, come from the environment), with this virtualenv's programs first on the PATH; `extra`
    is appended to its command line."""
    return ["/bin/sh", "-c", f'PATH="{BIN}:$PATH"; export PATH; {procfile_command(name=name)} {extra}']


def worker_processes() -> list[tuple[str, str]]:
    """(process name, Procfile line) for each worker process `make run` starts: one per worker
    group, and as many of a line as kaizen_site.runtime.process_counts says (critical, critical.2)."""
    from django.conf import settings

    from kaizen_site.runtime import process_counts

    counts = process_counts(broker_url=settings.CELERY_BROKER_URL)
    return [
        (group if index == 0 else f"{group}.{index + 1}", group)
        for group in settings.CELERY_WORKER_GROUPS
        for index in range(counts.get(group, 1))
    ]


WEB_WORKERS, WEB_THREADS = 2, 64  # the Procfile's defaults (WEB_CONCURRENCY, WEB_THREADS)


def web_argv(*, server: str, app: str, port: int, workers: int = WEB_WORKERS, threads: int = WEB_THREADS) -> list[str]:
    """A WSGI server for `app` ("module:callable") on loopback `port`: granian, as the Procfile's
    `web:` line starts it, or gunicorn with gthread workers (what served the API before), both at
    `workers` processes x `threads` request threads, so the two are compared like for like."""
    if server == "granian":
        return [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--blocking-threads", str(threads), "--no-ws", app]  # fmt: skip
    if server == "gunicorn":
        return [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
                "--keep-alive", "5"]  # fmt: skip
    raise SystemExit(f"unknown server {server!r} (one of {', '.join(SERVERS)})")


# --- CPU per process, from /proc -------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, CPU ticks in user + system mode) of `pid`, or None once it has gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and brackets
    return int(fields[2]), int(fields[11]) + int(fields[12])


def _postgres_backend(pid: int, database: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline


def cpu_sample(*, groups: dict[str, int], database: str | None = None) -> dict[int, tuple[str, int]]:
    """pid -> (name, CPU ticks so far) for every process of the groups in `groups` (name -> group
    leader's pid, as Processes starts them) and, as "postgres", the server's backends for `database`."""
    by_leader = {leader: name for name, leader in groups.items()}
    sample = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        group, ticks = stat
        if group in by_leader:
            sample[pid] = (by_leader[group], ticks)
        elif database and _postgres_backend(pid, database):
            sample[pid] = ("postgres", ticks)
    return sample


def cpu_ms_per(*, before: dict, after: dict, count: int) -> dict[str, float]:
    """CPU milliseconds per unit of work (e.g. per stored report) of each process between two
    cpu_sample()s. A process that ended in between takes its ticks with it: the figures are floors."""
    used: dict[str, int] = {}
    for pid, (name, ticks) in after.items():
        start = before.get(pid)
        used[name] = used.get(name, 0) + ticks - (start[1] if start and start[0] == name else 0)
    return {name: ticks * 1000 / CLOCK_TICKS / max(count, 1) for name, ticks in sorted(used.items())}


# --- Load and figures -----------------------------------------------------------------------


def require_wrk() -> None:
    """Exit with the way to install wrk unless it is on the PATH."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")


def run_wrk(
    *, url: str, script: Path, connections: int, seconds: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Load `url` with wrk (2 threads, `script`) and return its figures (see parse_wrk)."""
    done = subprocess.run(  # noqa: S603 - our own arguments
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],  # noqa: S607
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_wrk(output=done.stdout)


def parse_wrk(*, output: str) -> dict[str, float]:
    """From wrk --latency's output: requests, rps, p50/p90/p99 in ms, non_2xx and socket_errors."""
    figures = {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
    }
    for pct in ("50", "90", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        figures[f"p{pct}"] = float(value) * MS_PER_UNIT[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    figures["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    figures["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    return figures


def percentile(*, values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def load_average() -> str:
    """The machine's 1, 5 and 15-minute load averages, as "load average 0.52 0.61 0.70"."""
    return "load average " + " ".join(f"{load:.2f}" for load in os.getloadavg())


# --- Open-loop load -------------------------------------------------------------------------


def open_loop_get(*, url: str, paths: list[str], rate: float, seconds: float, max_connections: int = 256) -> dict:
    """GET `paths` (in turn) at a fixed `rate` per second for `seconds`, whatever the answers'
    pace: the open loop a steady population of clients makes. Each request's latency runs from
    the moment it was due, not from when a connection was free to send it, so a stall counts for
    every request it delayed (no coordinated omission). Keep-alive HTTP/1.1 connections are
    reused and opened as needed, up to `max_connections`.
    Returns sent, completed, errors, statuses, the achieved rate and p50/p90/p99/max in ms."""
    import asyncio
    from collections import Counter
    from urllib.parse import urlsplit

    target = urlsplit(url)
    host, port = target.hostname, target.port or 80

    async def run() -> dict:
        loop = asyncio.get_running_loop()
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        slots = asyncio.Semaphore(max_connections)
        latencies: list[float] = []
        statuses: Counter = Counter()
        errors = [0]

        async def one(path: str, due: float) -> None:
            async with slots:
                reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
                try:
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    await reader.readexactly(int(length.group(1)) if length else 0)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    errors[0] += 1
                    writer.close()
                    return
                latencies.append((loop.time() - due) * 1000)
                statuses[int(head[9:12])] += 1
                idle.append((reader, writer))

        count = int(rate * seconds)
        start = loop.time() + 0.1
        tasks = []
        for n in range(count):
            due = start + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[n % len(paths)], due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
        for _, writer in idle:
            writer.close()
        figures = {"sent": count, "completed": len(latencies), "errors": errors[0], "statuses": dict(statuses)}
        figures["rate"] = len(latencies) / elapsed
        for pct in (50, 90, 99):
            figures[f"p{pct}"] = percentile(values=latencies, pct=pct) if latencies else float("nan")
        figures["max"] = max(latencies, default=float("nan"))
        return figures

    # The generator must not stall: a garbage collection over this process's heap (Django, a
    # bench's data) would delay sends and reads and be charged to the server. Collect now, then
    # not again until the run is over.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(run())
    finally:
        gc.enable()
        gc.unfreeze()
