"""Queue isolation benchmark: how long P0 issue work waits for a worker while a P3 flood is queued.

    .venv/bin/python bench/queue_isolation.py [--backlog 20000] [--reports 100] [--work burn|sleep]

What is measured: for each P0 report, the time from the bench's POST /api/v1/issues to the start
of its healing.tasks.process_issue in a worker (recorded by bench/busywork.py on task_prerun).
That is an upper bound of enqueue → start: it also holds the HTTP request, in which a P0 report
is written to the database and its work published (P0 reports skip the Redis stream). The bench
prints both legs: POST → published, and published → started.

How: the real pieces run as subprocesses on a scratch PostgreSQL database and Redis db 4 (also the
broker): the Procfile's web server, the ingest consumer and the Procfile's worker groups
(settings.CELERY_WORKER_GROUPS: `critical` P0, in as many processes as `make run` starts, `urgent`
P1,notify,ops, `routine` P2,P3,research).
Each run starts on an empty database, so that each sees the same load: the ingest load's repeated
issues are new, and cross their escalation threshold during the run.
A backlog of busywork tasks (~50 ms each) is queued on P3 so the routine worker stays busy, then
P0 reports are sent over ~5 s.
Baseline, in the same run: one worker with four processes consuming every queue, the backlog on
the queue the P0 issues also go to. `--work sleep` makes the busywork sleep instead of burning CPU,
which tells waiting in the queue apart from waiting for a CPU.

While the P0 reports are sent, the ingest load of bench/ingest.py (wrk, 32 connections,
bench/ingest.lua) runs against the same server (`--ingest-connections 0` leaves it out).

Target: P0 p99 ≤ 100 ms with isolated queues under the backlog and the ingest load, while the
single-queue baseline waits behind the backlog.
"""

import argparse
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import (  # noqa: E402
    BIN,
    ROOT,
    Processes,
    free_port,
    load_average,
    percentile,
    procfile_argv,
    recreate_database,
    run_wrk,
    wait_http,
    wait_worker,
    worker_processes,
)  # fmt: skip

BENCH_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/kaizen_bench_queues",
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"),
    "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"),
    "KAIZEN_INGEST_MODE": "stream",
    "KAIZEN_INGEST_STREAM": "kaizen:ingest",
    "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
    "PYTHONPATH": str(ROOT),
    "PYTHONUNBUFFERED": "1",
}
os.environ.update(BENCH_ENV)

TARGET_P99_MS = 100.0
INGEST_MARGIN_SECONDS = 2.0
SEND_OVER_SECONDS = 5.0
WARM_UP_REPORTS = 4


# --- Set-up ---------------------------------------------------------------------------------


def demo_project_key() -> str:
    """The demo project, unthrottled; returns its public ingest key."""
    from django.core.management import call_command

    from healing.models import Project

    call_command("kaizen_demo", stdout=io.StringIO())
    project = Project.objects.get(slug="demo")
    Project.objects.filter(pk=project.pk).update(rate_limit_per_minute=10_000_000)
    return project.keys.filter(is_active=True).order_by("-created_at").first().public_key


def redis():
    from kaizen_site import redis_client

    return redis_client.get().client


# --- Processes ------------------------------------------------------------------------------


def web_start(procs: Processes) -> str:
    port = free_port()
    procs.start(name="web", env={**os.environ, "PORT": str(port)}, argv=procfile_argv(name="web"))
    base_url = f"http://127.0.0.1:{port}"
    wait_http(url=f"{base_url}/healthz", procs=procs, name="web")
    return base_url


def consumer_start(procs: Processes) -> None:
    procs.start(name="consumer", argv=[sys.executable, "manage.py", "ingest_consumer"])


def worker_start(
    procs: Processes, name: str, *, line: str = "", queues: str | None = None, concurrency: int = 2
) -> None:
    """A process `name` of the Procfile's worker group `line` (or, given `queues`, one worker on
    those queues), plus the busywork task; returns once it is ready."""
    if queues is None:
        argv = procfile_argv(name=line or name, extra="--include bench.busywork")
    else:
        argv = [
            str(BIN / "celery"), "-A", "kaizen_site", "worker", "--queues", queues, "--hostname", f"{name}@%h",
            "--concurrency", str(concurrency), "-P", "prefork", "--loglevel", "INFO", "--include", "bench.busywork",
        ]  # fmt: skip
    procs.start(name=name, argv=argv)
    wait_worker(procs=procs, name=name)


def priority_said(procs: Processes, name: str) -> str:
    """What the worker `name` logged at start about its CPU priority (kaizen_site.worker_priority)."""
    for line in procs.log_path(name=name).read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("logger") == "kaizen.workers":
            said = {key: entry[key] for key in ("changed", "refused") if entry.get(key)}
            return f"{entry.get('event')} {said}"
    return "unchanged (it logged nothing about it)"


# --- Queues ---------------------------------------------------------------------------------


def backlog_publish(*, queue: str, count: int, work: str) -> float:
    """Queue `count` busywork tasks on `queue` through one producer; returns the seconds it took."""
    from bench.busywork import WORK_SECONDS, busy
    from kaizen_site.celery import app

    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            busy.apply_async(args=(WORK_SECONDS, work), queue=queue, producer=producer)
    return time.perf_counter() - started


def depth(queue: str) -> int:
    return redis().llen(queue)


def queues_purge() -> None:
    """Empty every Celery queue, including messages workers had reserved but not acknowledged."""
    from django.conf import settings

    from kaizen_site.celery import app

    with app.connection_for_write() as conn:
        for queue in settings.CELERY_TASK_QUEUES:
            conn.default_channel.queue_purge(queue.name)
    redis().delete("unacked", "unacked_index")


def backlog_confirm(queue: str, who: str) -> int:
    """Check the worker is busy on the backlog: not empty and going down. Returns its depth."""
    before = depth(queue)
    time.sleep(2.0)
    after = depth(queue)
    if after == 0 or after >= before:
        raise SystemExit(f"{who} is not working through the {queue} backlog ({before} → {after} queued)")
    rate = (before - after) / 2.0
    print(f"  {who} busy: {queue} backlog {after:,}, draining at {rate:,.0f} tasks/s")
    return after


# --- P0 reports -----------------------------------------------------------------------------


def p0_report(tag: str, n: int) -> dict:
    return {
        "type": "BILLING_ISSUE",
        "message": "I paid for 100 credits but my balance still shows 0",
        "fingerprint": [f"bench-p0-{tag}-{n}"],
        "user": {"id": f"u{n}"},
    }


def reports_send(
    base_url: str, key: str, *, tag: str, count: int, over: float, answered: dict[str, float] | None = None
) -> dict[str, float]:
    """POST `count` distinct P0 reports evenly over `over` seconds; returns issue id → time sent,
    and fills `answered` (if given) with issue id → time the answer came back."""
    import requests

    sent: dict[str, float] = {}
    with requests.Session() as session:
        session.headers["X-Kaizen-Key"] = key
        first = time.monotonic()
        for n in range(count):
            time.sleep(max(0.0, first + n * over / count - time.monotonic()))
            at = time.time()
            response = session.post(f"{base_url}/api/v1/issues", json=p0_report(tag, n), timeout=10)
            if response.status_code != 202:
                raise SystemExit(f"ingest answered {response.status_code}: {response.text[:300]}")
            issue_id = response.json()["issue_id"]
            sent[issue_id] = at
            if answered is not None:
                answered[issue_id] = time.time()
    return sent


def starts_wait(issue_ids: list[str], timeout: float) -> dict[str, float]:
    """Wait until every issue's process_issue started, or `timeout`; returns issue id → start time."""
    from bench.busywork import STARTS_KEY

    deadline = time.monotonic() + timeout
    while True:
        values = redis().hmget(STARTS_KEY, issue_ids)
        started = {pk: float(v) for pk, v in zip(issue_ids, values, strict=True) if v is not None}
        if len(started) == len(issue_ids) or time.monotonic() >= deadline:
            return started
        time.sleep(0.05)


def severities_check(issue_ids: list[str], timeout: float = 30.0) -> None:
    """Every report must have been stored as a P0 issue; abort with a clear message if not."""
    from healing.models import Issue

    deadline = time.monotonic() + timeout
    while True:
        stored = dict(Issue.objects.filter(id__in=issue_ids).values_list("id", "severity"))
        if len(stored) == len(issue_ids) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if len(stored) < len(issue_ids):
        raise SystemExit(f"only {len(stored)}/{len(issue_ids)} reports reached the database within {timeout:.0f} s")
    wrong = sorted({severity for severity in stored.values() if severity != "P0"})
    if wrong:
        raise SystemExit(
            f"the bench's reports were classified {', '.join(wrong)}, not P0: check the classification rules"
        )


def ingest_escalations() -> int:
    """How many of bench/ingest.lua's issues are P0: its 50 repeated issues each cross their rule's
    threshold of affected users within seconds, in the same consumer batch."""
    from healing.models import Issue

    return Issue.objects.filter(severity="P0", title__startswith="Generate failed for ").count()


def published_at(issue_ids: list[str]) -> dict[str, float]:
    """When the outbox recorded each issue's task as sent (right after the publish returned)."""
    from healing.models import Issue

    rows = Issue.objects.filter(id__in=issue_ids, enqueued_at__isnull=False).values_list("id", "enqueued_at")
    return {str(pk): at.timestamp() for pk, at in rows}


class IngestLoad:
    """bench/ingest.py's load (wrk, bench/ingest.lua: half the reports new issues) against the
    same server while the P0 reports are sent; it starts INGEST_MARGIN_SECONDS before them."""

    def __init__(self, *, base_url: str, key: str, connections: int):
        self.base_url, self.key, self.connections = base_url, key, connections
        self.figures: dict | None = None
        self.thread: threading.Thread | None = None

    def start(self, *, seconds: float) -> None:
        if not self.connections:
            return

        def run() -> None:
            self.figures = run_wrk(
                url=self.base_url, script=ROOT / "bench/ingest.lua", connections=self.connections,
                seconds=max(1, round(seconds)), env={**os.environ, "KEY": self.key},
            )  # fmt: skip

        self.thread = threading.Thread(target=run)
        self.thread.start()
        time.sleep(INGEST_MARGIN_SECONDS)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def describe(self) -> str:
        if not self.connections:
            return "no concurrent ingest load (--ingest-connections 0)"
        if self.figures is None:
            return "concurrent ingest load: wrk failed"
        f = self.figures
        return (
            f"concurrent ingest load, wrk -c{self.connections} (bench/ingest.lua): {f['rps']:,.0f} reports/s, "
            f"p99 {f['p99']:.1f} ms, non-2xx {f['non_2xx']:.0f}"
        )


# --- Figures --------------------------------------------------------------------------------


def waits_ms(sent: dict[str, float], started: dict[str, float]) -> list[float]:
    return [(started[pk] - sent[pk]) * 1000 for pk in started]


def spread(values: list[float]) -> str:
    p50, p99 = percentile(values=values, pct=50), percentile(values=values, pct=99)
    return f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, max {max(values):,.0f} ms"


@dataclass
class Outcome:
    reports: int
    waits: list[float]  # ms, for the reports whose work started
    backlog: int = 0  # tasks ahead of the P0 work when it was sent
    not_started: int = 0


# --- The two runs ---------------------------------------------------------------------------


def run_isolated(procs: Processes, base_url: str, key: str, args, tag: str) -> Outcome:
    from django.conf import settings

    groups = settings.CELERY_WORKER_GROUPS
    processes = worker_processes()
    counts = Counter(line for _name, line in processes)
    print("isolated queues, the Procfile's worker groups: "
          + ", ".join(f"`{n}` [{q}] ×{counts[n]}" for n, q in groups.items()))  # fmt: skip
    for name, line in processes:
        worker_start(procs, name, line=line)
    print(f"  critical worker's CPU priority: {priority_said(procs, 'critical')}")

    warm = reports_send(base_url, key, tag=f"{tag}-warm", count=WARM_UP_REPORTS, over=0.0)
    severities_check(list(warm))
    if len(starts_wait(list(warm), timeout=30)) < len(warm):
        raise SystemExit("warm-up: the P0 reports were never processed; see the urgent worker's log")
    print(f"  warm-up: {len(warm)} P0 reports stored as P0 and processed")

    took = backlog_publish(queue="P3", count=args.backlog, work=args.work)
    print(f"  queued {args.backlog:,} busywork tasks on P3 in {took:.1f} s")
    backlog = backlog_confirm("P3", "routine worker")

    load = IngestLoad(base_url=base_url, key=key, connections=args.ingest_connections)
    load.start(seconds=SEND_OVER_SECONDS + 2 * INGEST_MARGIN_SECONDS)
    answered: dict[str, float] = {}
    sent = reports_send(
        base_url, key, tag=f"{tag}-isolated", count=args.reports, over=SEND_OVER_SECONDS, answered=answered
    )
    load.join()
    started = starts_wait(list(sent), timeout=args.timeout)
    severities_check(list(sent))
    waits = waits_ms(sent, started)
    print(f"  {load.describe()}")
    print(f"  sent {len(sent)} P0 reports over {SEND_OVER_SECONDS:.0f} s; all stored as P0; "
          f"{len(started)}/{len(sent)} started within {args.timeout:.0f} s")  # fmt: skip
    if waits:
        ok = percentile(values=waits, pct=99) <= TARGET_P99_MS
        print(f"  P0 wait (POST → task start): {spread(waits)}   "
              f"target p99 ≤ {TARGET_P99_MS:.0f} ms: {'met' if ok else 'MISSED'}")  # fmt: skip
        published = published_at(list(started))
        print(f"    of which POST → published {between(sent, published)}; published → started "
              f"{between(published, started)}; the POST's answer came back {between(sent, answered)} "
              f"after it was sent")  # fmt: skip
    print(f"  meanwhile the ingest load's issues escalated to P0 (their work and alerts share the P0 workers): "
          f"{ingest_escalations()}")  # fmt: skip
    print(f"  P3 backlog remaining: {depth('P3'):,} tasks")
    return Outcome(reports=len(sent), waits=waits, backlog=backlog, not_started=len(sent) - len(started))


def between(earlier: dict[str, float], later: dict[str, float]) -> str:
    """p50/p99 of one leg of the P0 wait: from `earlier` to `later`, for the issues in both."""
    parts = [(later[pk] - earlier[pk]) * 1000 for pk in later if pk in earlier]
    if not parts:
        return "n/a"
    return f"p50 {percentile(values=parts, pct=50):,.0f} ms, p99 {percentile(values=parts, pct=99):,.0f} ms"


def run_single_queue(procs: Processes, base_url: str, key: str, args, tag: str) -> Outcome:
    everything = "P0,P1,P2,P3,notify,ops,research"
    print(f"single queue (baseline): one worker [{everything}] ×4, the backlog on P0")
    for name, _line in worker_processes():
        procs.stop(name=name)
    queues_purge()
    took = backlog_publish(queue="P0", count=args.backlog, work=args.work)
    print(f"  queued {args.backlog:,} busywork tasks on P0 in {took:.1f} s")
    worker_start(procs, "single", queues=everything, concurrency=4)
    backlog_confirm("P0", "worker")

    backlog, since = depth("P0"), time.monotonic()
    sent = reports_send(base_url, key, tag=f"{tag}-single", count=args.reports, over=SEND_OVER_SECONDS)
    started = starts_wait(list(sent), timeout=args.timeout)
    severities_check(list(sent))
    waits = waits_ms(sent, started)
    not_started = len(sent) - len(started)
    left_ahead = max(0, depth("P0") - not_started)
    rate = (backlog - left_ahead) / (time.monotonic() - since)  # busywork tasks/s, as measured
    print(
        f"  sent {len(sent)} P0 reports over {SEND_OVER_SECONDS:.0f} s with {backlog:,} tasks ahead; all stored as P0"
    )
    print(
        f"  started within {args.timeout:.0f} s: {len(started)}/{len(sent)}" + (f" ({spread(waits)})" if waits else "")
    )
    if not_started:
        measured = f" (≈ {left_ahead / rate:,.0f} s at the {rate:,.0f} tasks/s measured)" if rate > 0 else ""
        print(
            f"  not started after {args.timeout:.0f} s: {not_started} reports, {left_ahead:,} tasks still ahead of "
            f"them ≈ {expected_seconds(left_ahead):,.0f} s more at 50 ms / 4 processes{measured}"
        )
    return Outcome(reports=len(sent), waits=waits, backlog=backlog, not_started=not_started)


def expected_seconds(tasks: int) -> float:
    from bench.busywork import WORK_SECONDS

    return tasks * WORK_SECONDS / 4


def summary(isolated: Outcome, single: Outcome, timeout: float) -> str:
    if isolated.waits:
        p50, p99 = percentile(values=isolated.waits, pct=50), percentile(values=isolated.waits, pct=99)
        waits = f"P0 wait p50 {p50:,.0f} ms, p99 {p99:,.0f} ms"
    else:
        waits = "no P0 work started"
    if isolated.not_started:
        waits += f" ({isolated.not_started} not started)"
    started = single.reports - single.not_started
    return (
        f"queue isolation: {waits} (target p99 ≤ {TARGET_P99_MS:.0f} ms) — single queue: {started}/{single.reports} "
        f"started within {timeout:.0f} s, backlog {single.backlog:,} tasks ≈ {expected_seconds(single.backlog):,.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000, help="busywork tasks queued ahead (default 20,000)")
    parser.add_argument("--reports", type=int, default=100, help="P0 reports sent (default 100)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait, after the last report, for P0 work to start"
    )
    parser.add_argument("--work", choices=("burn", "sleep"), default="burn", help="busywork burns CPU or sleeps")
    parser.add_argument(
        "--ingest-connections", type=int, default=32, help="wrk connections of ingest load meanwhile (0: none)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on a plain kill too

    began = time.monotonic()
    recreate_database(url=os.environ["DATABASE_URL"])
    import django

    logging.getLogger("kaizen").setLevel(logging.WARNING)  # keep this process's info lines out of the figures
    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    key = demo_project_key()
    redis().flushdb()
    print(f"machine: {os.cpu_count()} CPUs, {load_average()} at start")
    print(f"busywork: {args.work} 50 ms per task; {args.backlog:,} tasks queued ahead; {args.reports} P0 reports")

    tag = uuid.uuid4().hex[:8]
    procs = Processes(logs=Path(tempfile.mkdtemp(prefix="queue-isolation-")))
    try:
        base_url = web_start(procs)
        consumer_start(procs)
        isolated = run_isolated(procs, base_url, key, args, tag)
        single = run_single_queue(procs, base_url, key, args, tag)
    except BaseException:
        print(f"logs of the processes: {procs.logs}")
        raise
    finally:
        procs.stop_all()
        queues_purge()
    shutil.rmtree(procs.logs, ignore_errors=True)

    print("note: the wait runs from the bench's POST to the task's start, so it also holds the HTTP request, in "
          "which a P0 report is written and its work published: an upper bound of enqueue → start.")  # fmt: skip
    print(summary(isolated, single, args.timeout))
    print(f"wall time {time.monotonic() - began:.0f} s; {load_average()} at end")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; the processes the bench started were stopped")
