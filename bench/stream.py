"""Event-stream benchmark: 1,000 users' popups open at once, all on one issue; how long from the
commit of an issue's stage move to the status arriving at each of them, and what the stream
server's memory is.

    .venv/bin/python bench/stream.py [--clients 1000] [--moves 20]

The real pieces: the Procfile's `stream` process (uvicorn, one process) on a scratch PostgreSQL
database, with Redis pub/sub waking the streams through the process's one subscriber. 1,000
sessions each reported the issue (one occurrence each); each gets a plain asyncio socket reading
its Server-Sent Events on loopback (no client library). This process then commits `--moves` stage
moves of the issue through `issue_move`, one at a time, waiting for every client to receive each:
the fan-out (1,000 sessions and their rate state in one query, 1,000 rows in one insert, one PUBLISH
pipeline) runs here after the commit, as it does
in a worker. The clock starts at the commit (an on-commit hook registered before the move's own)
and stops when a client has read the event's `data:` line; both in this process. A "Fixed"
(deployed) status is held by the stream until its flag has reached every web process
(healing.stream.fanout.status_send_after): its clock starts when it may be sent.

The per-minute status cap is raised for the run: this measures delivery, not the limiter.

Target: p99 ≤ 250 ms with 1,000 open streams.
"""

import argparse
import asyncio
import gc
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import BIN, Processes, free_port, load_average, percentile, recreate_database  # noqa: E402

TARGET_P99_MS = 250.0
CONNECT_BATCH = 100  # clients connecting at once (the server reads each one's backlog once)
MOVE_TIMEOUT_S = 30.0
# A cycle of stages the issue moves through, each different from the one before (a repeated stage
# is not told twice).
CYCLE = ("diagnosing", "root_cause_found", "fixing", "verifying", "deployed", "resolved", "detected")


def bench_env(*, stream_port: int) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": "bench",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench_stream"),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "KAIZEN_LOG_JSON": "0",
        "LOG_LEVEL": "WARNING",
        "KAIZEN_STREAM_URL": f"http://127.0.0.1:{stream_port}",
        "KAIZEN_STREAM_MAX_SECONDS": "3600",  # no stream ends during the run
        "KAIZEN_STREAM_STATUSES_PER_MINUTE": "100000",
        "KAIZEN_STREAM_HARD_CAP": "100000",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def open_files_raise(*, needed: int) -> None:
    """Two sockets per client (its end and the server's, both children of this machine) plus slack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"warning: open files limited to {target} (hard limit); fewer clients may connect")


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (the Procfile line runs under /bin/sh)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        pending.extend(int(child) for child in children)
    return total / 1024


class Clients:
    """The popups: one asyncio socket each, on a loop in a thread of its own."""

    def __init__(self, *, port: int, streams: list[tuple[str, str]]):
        self.port, self.streams = port, streams
        self.connected = 0
        self.failed: list[str] = []
        self.receipts: dict[str, list[float]] = {}  # the event's `at` → receipt times
        self.tasks: list[asyncio.Task] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Cancel the readers and stop the loop (the server is stopped after)."""

        async def cancel() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    def connect_all(self) -> None:
        asyncio.run_coroutine_threadsafe(self._connect_all(), self.loop).result()

    async def _connect_all(self) -> None:
        for start in range(0, len(self.streams), CONNECT_BATCH):
            batch = self.streams[start : start + CONNECT_BATCH]
            ready = [asyncio.get_running_loop().create_future() for _ in batch]
            for (session_id, token), future in zip(batch, ready, strict=True):
                # Kept: the loop holds only weak references, and a collected task stops reading.
                self.tasks.append(asyncio.get_running_loop().create_task(self._client(session_id, token, future)))
            await asyncio.gather(*ready, return_exceptions=True)

    async def _client(self, session_id: str, token: str, ready: asyncio.Future) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
            writer.write(
                f"GET /api/v1/sessions/{session_id}/events?token={token} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(status.decode(errors="replace").strip())
            while (line := await reader.readline()) not in (b"\r\n", b""):
                pass  # headers
            # The body is chunked; SSE lines are told apart from chunk-size lines by their field name.
            while line := await reader.readline():
                if line.startswith(b"retry:") and not ready.done():
                    self.connected += 1
                    ready.set_result(True)
                elif line.startswith(b"data: "):
                    received = time.monotonic()
                    at = orjson.loads(line[6:]).get("at")
                    self.receipts.setdefault(at, []).append(received)
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on with the others
            self.failed.append(str(exc)[:200])
            if not ready.done():
                ready.set_result(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    open_files_raise(needed=2 * args.clients + 512)  # inherited by the server it starts

    folder = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    port = free_port()
    env = bench_env(stream_port=port)
    os.environ.update(env)
    recreate_database(url=env["DATABASE_URL"])
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from healing.loop.stages import issue_move
    from healing.models import Issue, IssueEvent, Occurrence, Project, UserSession, issue_id_for
    from healing.stream.tokens import token_issue
    from kaizen_site.celery import app as celery_app

    call_command("migrate", interactive=False, verbosity=0)
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # the bench's own database
    project = Project.objects.create(slug="bench", name="Bench")
    now = timezone.now()
    issue = Issue.objects.create(
        id=issue_id_for(project_id=project.pk, fingerprint="bench"), project=project, fingerprint="bench",
        grouping="bench", type="SILENT_FAILURE", severity="P1", base_severity="P1", title="Generate did nothing",
        first_seen=now, last_seen=now, stage="detected",
    )  # fmt: skip
    sessions = UserSession.objects.bulk_create(
        UserSession(project=project, session_id=f"bench-{i:05d}-{os.urandom(8).hex()}", user_name=f"User {i}")
        for i in range(args.clients)
    )
    Occurrence.objects.bulk_create(
        Occurrence(
            event_id=os.urandom(16).hex(),
            project=project,
            issue=issue,
            source="native",
            received_at=now,
            session_id=s.session_id,
            message="Generate did nothing",
            payload={},
        )  # fmt: skip
        for s in sessions
    )
    celery_app.conf.task_always_eager = False  # nothing here publishes work; keep it that way
    # When the fan-out's PUBLISH went out, to split the latency: this process's share, the server's.
    from healing.stream import fanout

    published: list[float] = []
    publish = fanout.wire_publish

    def publish_stamped(*, wire) -> None:
        publish(wire=wire)
        published.append(time.monotonic())

    fanout.wire_publish = publish_stamped

    procs = Processes(logs=folder)
    try:
        from bench.harness import wait_http

        procs.start(name="stream", argv=["/bin/sh", "-c", _procfile_stream()], env={**os.environ, **env})
        wait_http(url=f"http://127.0.0.1:{port}/healthz", procs=procs, name="stream", timeout=120)
        server_pid = procs.running["stream"].pid
        idle_rss = rss_mb(server_pid)
        print(f"machine: {os.cpu_count()} CPUs, {load_average()} at start (shared machine: other work may run)")

        tokens = [(s.session_id, token_issue(project_id=project.pk, session_id=s.session_id)) for s in sessions]
        clients = Clients(port=port, streams=tokens)
        began = time.monotonic()
        clients.connect_all()
        print(f"streams open: {clients.connected}/{args.clients} in {time.monotonic() - began:.1f} s"
              + (f" ({len(clients.failed)} failed, e.g. {clients.failed[0]})" if clients.failed else ""))  # fmt: skip
        open_rss = rss_mb(server_pid)
        # This process's own setup (the migrations, the seed rows, 1,000 client tasks) is a heap a
        # worker does not carry: collected and frozen once here, so that a full collection of it
        # does not land in the first move's fan-out (it added ~200 ms there, the p99 of a run).
        gc.collect()
        gc.freeze()

        latencies: list[float] = []
        fanouts: list[float] = []
        missing = 0
        for n in range(args.moves):
            to = CYCLE[n % len(CYCLE)]
            committed: list[tuple[float, float]] = []
            issue.refresh_from_db()
            with transaction.atomic():
                # Registered before the move's own hook (the fan-out): called first, at the commit.
                transaction.on_commit(partial(_stamp, committed))
                assert issue_move(issue=issue, expected=issue.stage, to=to)
            at = IssueEvent.objects.filter(issue=issue).latest("id").created_at.isoformat()
            deadline = time.monotonic() + MOVE_TIMEOUT_S
            while len(clients.receipts.get(at, ())) < clients.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            got = clients.receipts.get(at, [])
            missing += clients.connected - len(got)
            committed_at, committed_wall = committed[0]
            # "Fixed" is held until its flag has reached every web process: from then on it counts.
            held = fanout.status_send_after(kind="status", payload={"stage": to, "at": at}) - committed_wall
            latencies.extend((t - committed_at - max(0.0, held)) * 1000 for t in got)
            fanouts.append((published[-1] - committed_at) * 1000)
            time.sleep(0.2)
        busy_rss = rss_mb(server_pid)
        clients.close()
    finally:
        procs.stop_all()

    p50, p99 = percentile(values=latencies, pct=50), percentile(values=latencies, pct=99)
    print(f"moves: {args.moves}, deliveries: {len(latencies)} ({missing} not received within {MOVE_TIMEOUT_S:.0f} s)")
    print(f"commit → received at the client: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
    print(f"of which commit → PUBLISH sent (the fan-out: 1,000 rows inserted, one pipeline): "
          f"p50 {percentile(values=fanouts, pct=50):.1f} ms, max {max(fanouts):.1f} ms")  # fmt: skip
    print(f"target: p99 ≤ {TARGET_P99_MS:.0f} ms with {args.clients} open streams → "
          f"{'met' if p99 <= TARGET_P99_MS and not missing else 'NOT met'}")  # fmt: skip
    per_stream_kb = (open_rss - idle_rss) * 1024 / max(clients.connected, 1)
    print(f"stream server RSS: {idle_rss:.0f} MB idle, {open_rss:.0f} MB with {clients.connected} streams open "
          f"({per_stream_kb:.0f} KB per stream), {busy_rss:.0f} MB after the moves")  # fmt: skip
    print(f"machine: {load_average()} at the end")


def _stamp(into: list[tuple[float, float]]) -> None:
    into.append((time.monotonic(), time.time()))


def _procfile_stream() -> str:
    from bench.harness import ROOT

    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "stream":
            return command.strip()
    raise SystemExit("no `stream` process in the Procfile")


if __name__ == "__main__":
    main()
