"""Ingest under faults: nothing accepted is lost, nothing is stored twice, no 5xx.

What runs: the web server (the Procfile's `web:` line) and the ingest consumer as `make run`
starts them, on PostgreSQL and on a
redis-server this bench starts on a free port of its own (with AOF, as the README asks of a
production Redis). The Celery workers are not started: the faults are ingestion's.
Load: N native reports (default 5,000) from a pool of client threads, each with its own event id.
Faults, in order, while the load runs:
  1. at 20 % of the reports, the consumer is killed (SIGKILL) and started again a second later;
  2. at 40 %, Redis is stopped for 5 s (ingest falls back to writing to the database);
  3. at 50 %, one poison entry is put in the stream: a report of a project deleted while it
     waited, which the database refuses (it is counted as accepted: it was in the stream), and
     one report whose timestamp is year 1 (what used to stop the consumer) is posted.
Printed: accepted, stored, duplicates, dead-lettered, 5xx and other refusals, then the check
`stored = accepted - dead-lettered, 0 duplicates, 0 x 5xx` (exit status 1 if it fails).

Run: .venv/bin/python bench/faults.py [--reports 5000] [--clients 16]
Bounded: the load has a deadline, the drain a timeout; every process it started is stopped.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import (  # noqa: E402
    BIN,
    ROOT,
    Processes,
    demo_project_ready,
    free_port,
    procfile_argv,
    recreate_database,
    wait_http,
)  # fmt: skip

PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
DATABASE = "kaizen_bench_faults"
STREAM = "bench:faults"
GROUP = "kaizen-store"  # healing.ingest.consumer.GROUP
CONSUMER = "bench-consumer"  # one name across restarts: the new process re-reads what the killed one held
REDIS_DOWN_S = 5.0
LOAD_DEADLINE_S = 300.0
DRAIN_TIMEOUT_S = 120.0


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1:`port`, its AOF in `workdir`, fsync'd on every write."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed program, our arguments
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),  # noqa: S607
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 15
        while True:
            try:
                probe.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis finishes its AOF and exits, as on a planned restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


@dataclass
class Tally:
    """What the clients were answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    accepted: set[str] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    fallback_answers: int = 0  # "detected": written straight to the database (Redis was down)


def env_for(*, port: int, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DEBUG="0", SECRET_KEY="bench", PORT=str(port), PATH=f"{BIN}:{env.get('PATH', '')}",
        DATABASE_URL=f"{PG}/{DATABASE}", REDIS_URL=redis_url, KAIZEN_INGEST_STREAM=STREAM, KAIZEN_INGEST_MODE="stream",
    )  # fmt: skip
    return env


def post_reports(*, url: str, key: str, numbers: list[int], tally: Tally, deadline: float) -> None:
    """One client: its share of the reports, each answered or counted as a refusal."""
    session = requests.Session()
    for n in numbers:
        if time.monotonic() > deadline:
            return
        event_id = str(uuid.uuid4())
        report = {"event_id": event_id, "type": "ERROR", "message": f"checkout failed {n % 50}",
                  "user": {"id": f"u{n % 500}"}, "route": "/checkout"}  # fmt: skip
        try:
            response = session.post(f"{url}/api/v1/issues", data=orjson.dumps(report), timeout=30,
                                    headers={"Content-Type": "application/json", "X-Kaizen-Key": key})  # fmt: skip
            status = response.status_code
            stage = response.json().get("stage") if status == 202 else None
        except requests.RequestException:
            status, stage = 0, None  # no answer at all: the client would send it again
        with tally.lock:
            tally.sent += 1
            tally.statuses[status] += 1
            if 200 <= status < 300:
                tally.accepted.add(event_id)
                tally.fallback_answers += stage == "detected"


def poison_entry() -> bytes:
    """A stream record as the web writes it, for a project that no longer exists."""
    event_id = str(uuid.uuid4())
    return orjson.dumps({
        "event_id": event_id, "project_id": 10**9, "issue_id": str(uuid.uuid4()), "fingerprint": "0" * 64,
        "grouping": "message | poison", "source": "native", "received_at": time.time(),
        "report": {"event_id": event_id, "type": "ERROR", "message": "from a deleted project"},
    })  # fmt: skip


def faults_inject(*, total: int, tally: Tally, procs: Processes, env: dict, server: RedisServer, url: str, key: str,
                  log: list[str], injected: list[str], done: threading.Event) -> None:  # fmt: skip
    """Watch the reports sent and inject each fault at its point of the run."""

    def wait_for(fraction: float) -> bool:
        while not done.is_set():
            if tally.sent >= total * fraction:
                return True
            time.sleep(0.01)
        return False

    started = time.monotonic()
    if not wait_for(0.2):
        return
    os.killpg(procs.running["consumer"].pid, signal.SIGKILL)
    procs.running["consumer"].wait()
    log.append(f"{time.monotonic() - started:6.1f} s  consumer killed (SIGKILL) after {tally.sent:,} reports")
    time.sleep(1.0)
    procs.start(name="consumer", env=env, argv=[PYTHON, "manage.py", "ingest_consumer", "--name", CONSUMER])
    log.append(f"{time.monotonic() - started:6.1f} s  consumer started again")

    if not wait_for(0.4):
        return
    server.stop()
    log.append(f"{time.monotonic() - started:6.1f} s  Redis stopped after {tally.sent:,} reports")
    time.sleep(REDIS_DOWN_S)
    server.start()
    log.append(f"{time.monotonic() - started:6.1f} s  Redis back after {REDIS_DOWN_S:.0f} s")

    if not wait_for(0.5):
        return
    record = poison_entry()
    redis.Redis.from_url(server.url).xadd(STREAM, {"r": record})
    injected.append(orjson.loads(record)["event_id"])
    year_one = requests.post(
        f"{url}/api/v1/issues", timeout=30, headers={"Content-Type": "application/json", "X-Kaizen-Key": key},
        data=orjson.dumps({"message": "a clock at year 1", "timestamp": "0001-01-01T00:00:00+01:00"}),
    )  # fmt: skip
    with tally.lock:
        tally.statuses[year_one.status_code] += 1
        if year_one.status_code == 202:
            tally.accepted.add(year_one.json()["event_id"])
    log.append(
        f"{time.monotonic() - started:6.1f} s  poison entry put in the stream after {tally.sent:,} reports; "
        f"year-1 report answered {year_one.status_code}"
    )


def wait_drained(*, server: RedisServer, procs: Processes) -> float:
    client = redis.Redis.from_url(server.url)
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        procs.check(name="consumer")
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(STREAM)}
            if client.xlen(STREAM) == 0 and groups.get(GROUP, {}).get("pending", 1) == 0:
                return time.monotonic() - started
        except redis.ResponseError:
            pass  # the stream does not exist yet
        time.sleep(0.2)
    raise SystemExit(f"the stream was not drained within {DRAIN_TIMEOUT_S:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed (Debian: apt-get install redis-server)")
    logs = ROOT / "var" / "bench" / "faults"
    shutil.rmtree(logs, ignore_errors=True)
    (logs / "redis").mkdir(parents=True)

    server = RedisServer(port=free_port(), workdir=logs / "redis")
    server.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = env_for(port=port, redis_url=server.url)
    recreate_database(url=f"{PG}/{DATABASE}")
    key = demo_project_ready(env=env)

    procs = Processes(logs=logs)
    tally, log, injected = Tally(), [], []
    try:
        procs.start(name="web", env=env, argv=procfile_argv(name="web"))
        procs.start(name="consumer", env=env, argv=[PYTHON, "manage.py", "ingest_consumer", "--name", CONSUMER])
        wait_http(url=f"{url}/healthz", procs=procs, name="web")
        done = threading.Event()
        deadline = time.monotonic() + LOAD_DEADLINE_S
        clients = [
            threading.Thread(
                target=post_reports,
                kwargs={
                    "url": url,
                    "key": key,
                    "numbers": list(range(i, args.reports, args.clients)),
                    "tally": tally,
                    "deadline": deadline,
                },
            )  # fmt: skip
            for i in range(args.clients)
        ]
        injector = threading.Thread(target=faults_inject, kwargs={
            "total": args.reports, "tally": tally, "procs": procs, "env": env, "server": server, "url": url,
            "key": key, "log": log, "injected": injected, "done": done,
        })  # fmt: skip
        started = time.monotonic()
        injector.start()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        load_s = time.monotonic() - started
        done.set()
        injector.join()
        drain_s = wait_drained(server=server, procs=procs)
    finally:
        procs.stop_all()
        server.stop()

    with psycopg.connect(f"{PG}/{DATABASE}") as conn:
        stored, distinct, counted = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), "
            "(SELECT coalesce(sum(occurrence_count), 0) FROM healing_issue) FROM healing_occurrence"
        ).fetchone()
        stored_ids = {str(row[0]) for row in conn.execute("SELECT event_id FROM healing_occurrence")}
        dead_ids = {str(row[0]) for row in conn.execute("SELECT event_id FROM healing_ingestdeadletter")}
    accepted = len(tally.accepted) + len(injected)
    dead = len(dead_ids)
    duplicates = (stored - distinct) + (counted - stored)  # rows twice, or counted twice in an issue
    missing = tally.accepted - stored_ids
    five_xx = sum(n for status, n in tally.statuses.items() if status >= 500)
    refused = sum(n for status, n in tally.statuses.items() if 0 < status < 200 or 300 <= status < 500)

    print(f"\ningest under faults: {args.reports:,} reports from {args.clients} clients, {os.cpu_count()} cores")
    for line in log:
        print(f"  {line}")
    print(f"load {load_s:.1f} s ({tally.sent / load_s:,.0f} reports/s), drained {drain_s:.1f} s after it")
    print(f"answers: {dict(sorted(tally.statuses.items()))}  ({tally.fallback_answers:,} written to the database "
          f"while Redis was down)")  # fmt: skip
    print(f"accepted      {accepted:>7,}  ({len(tally.accepted):,} answered 2xx + {len(injected)} poison entry)")
    print(f"stored        {stored:>7,}")
    print(f"duplicates    {duplicates:>7,}")
    print(f"dead-lettered {dead:>7,}  ({'the poison entry' if dead_ids == set(injected) else 'NOT the poison entry'})")
    print(f"5xx           {five_xx:>7,}")
    print(f"no answer / other refusals: {tally.statuses.get(0, 0):,} / {refused:,}; accepted but not stored: "
          f"{len(missing):,}")  # fmt: skip
    ok = stored == accepted - dead and duplicates == 0 and five_xx == 0 and not missing
    print(
        f"target: stored = accepted - dead-lettered, 0 duplicates, 0 x 5xx -> "
        f"{stored:,} = {accepted:,} - {dead:,}, {duplicates} duplicates, {five_xx} x 5xx: {'PASS' if ok else 'FAIL'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
