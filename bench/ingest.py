"""Ingest throughput: sustained POST /api/v1/issues against the service as `make run` starts it.

What runs: gunicorn with kaizen_site/gunicorn.conf.py and one ingest consumer (the Redis stream
drained into PostgreSQL), on PostgreSQL + Redis. The Celery workers are not started: the
process_issue tasks wait on the broker, so the figures are ingestion's own (in production the
workers run on other machines).
Load: wrk (Debian package `wrk`) on loopback, N connections for D seconds, half the reports
opening a new issue and half repeating one of 100 (bench/ingest.lua).
Printed: accepted/s, p50/p99 latency, errors, the stream backlog sampled every second (the drain
keeps pace when it stays flat), and once the stream is drained the database counts, which must
equal the accepted reports. Then the same load against the baseline, a plain DRF
ModelViewSet.create of the same payload into one table (bench/baseline), served the same way.

Run: .venv/bin/python bench/ingest.py [--seconds 30] [--connections 50]
Target on a 2-core machine: >= 2,000 reports/s sustained end to end, p99 <= 50 ms, zero lost.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import BIN, ROOT, Processes, recreate_database, require_wrk, run_wrk, wait_http  # noqa: E402

PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/3"
STREAM = "bench:ingest"
KAIZEN_DB, BASELINE_DB = "kaizen_bench_ingest", "kaizen_bench_baseline"
PORT = 8311
URL = f"http://127.0.0.1:{PORT}"


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DEBUG="0", SECRET_KEY="bench", PORT=str(PORT), PATH=f"{BIN}:{env.get('PATH', '')}", **extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def load(*, key: str, seconds: int, connections: int) -> dict:
    """wrk with bench/ingest.lua; accepted/s counts the 2xx answers over the run's length."""
    figures = run_wrk(
        url=URL, script=ROOT / "bench/ingest.lua", connections=connections, seconds=seconds,
        env={**os.environ, "KEY": key},
    )  # fmt: skip
    accepted = figures["requests"] - figures["non_2xx"]
    return {**figures, "accepted": accepted, "per_second": accepted / seconds}


def sample_backlog(client: redis.Redis, stop_event: threading.Event, samples: list[int]) -> None:
    while not stop_event.wait(1.0):
        samples.append(client.xlen(STREAM))


def bench_kaizen(*, mode: str, seconds: int, connections: int, logs: Path) -> dict:
    """`stream`: reports go through the Redis stream and the consumer; `direct`: each request
    writes its report in its own transaction (what the stream design is measured against)."""
    recreate_database(url=f"{PG}/{KAIZEN_DB}")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    env = env_for(
        DATABASE_URL=f"{PG}/{KAIZEN_DB}", REDIS_URL=REDIS_URL, KAIZEN_INGEST_STREAM=STREAM, KAIZEN_INGEST_MODE=mode
    )
    manage(env, "migrate", "--noinput")
    manage(env, "kaizen_demo")
    with psycopg.connect(f"{PG}/{KAIZEN_DB}", autocommit=True) as conn:
        conn.execute("UPDATE healing_project SET rate_limit_per_minute = 1000000000")
        key = conn.execute("SELECT public_key FROM healing_projectkey WHERE is_active").fetchone()[0]
    procs = Processes(logs=logs)
    try:
        procs.start(name="web", env=env, argv=[
            str(BIN / "gunicorn"), "kaizen_site.wsgi", "--config", "kaizen_site/gunicorn.conf.py",
        ])  # fmt: skip
        if mode == "stream":
            procs.start(name="consumer", argv=[PYTHON, "manage.py", "ingest_consumer"], env=env)
        wait_http(url=f"{URL}/healthz", procs=procs, name="web")
        load(key=key, seconds=3, connections=connections)  # warm-up: connections, caches
        wait_drained(client)
        before = stored_count(KAIZEN_DB)
        stop_event, backlog = threading.Event(), []
        sampler = threading.Thread(target=sample_backlog, args=(client, stop_event, backlog))
        sampler.start()
        result = load(key=key, seconds=seconds, connections=connections)
        stop_event.set()
        sampler.join()
        drained_at = time.monotonic()
        wait_drained(client)
        result["drain_after_s"] = time.monotonic() - drained_at
        result["backlog"] = backlog
    finally:
        procs.stop_all()
    result["stored"] = stored_count(KAIZEN_DB) - before
    with psycopg.connect(f"{PG}/{KAIZEN_DB}") as conn:
        result["issues"] = conn.execute("SELECT count(*) FROM healing_issue").fetchone()[0]
        counted = conn.execute("SELECT coalesce(sum(occurrence_count), 0), count(*) FROM healing_issue").fetchone()
        result["counters_match"] = counted[0] == conn.execute("SELECT count(*) FROM healing_occurrence").fetchone()[0]
    return result


def wait_drained(client: redis.Redis) -> None:
    if not client.exists(STREAM):
        return  # direct mode: nothing goes through the stream
    while client.xlen(STREAM) or client.xpending(STREAM, "kaizen-store")["pending"]:
        time.sleep(0.1)


def stored_count(database: str) -> int:
    with psycopg.connect(f"{PG}/{database}") as conn:
        return conn.execute("SELECT count(*) FROM healing_occurrence").fetchone()[0]


def bench_baseline(*, seconds: int, connections: int, logs: Path) -> dict:
    recreate_database(url=f"{PG}/{BASELINE_DB}")
    env = env_for(DJANGO_SETTINGS_MODULE="bench.baseline.settings", BASELINE_DB=BASELINE_DB)
    subprocess.run(
        [PYTHON, "-m", "django", "migrate", "--run-syncdb", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    procs = Processes(logs=logs)
    try:
        procs.start(name="baseline", env=env, argv=[
            str(BIN / "gunicorn"), "bench.baseline.wsgi", "--config", "kaizen_site/gunicorn.conf.py",
        ])  # fmt: skip
        wait_http(url=f"{URL}/api/v1/issues", procs=procs, name="baseline")
        load(key="", seconds=3, connections=connections)
        result = load(key="", seconds=seconds, connections=connections)
    finally:
        procs.stop_all()
    with psycopg.connect(f"{PG}/{BASELINE_DB}") as conn:
        result["stored"] = conn.execute("SELECT count(*) FROM baseline_report").fetchone()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--skip-baseline", action="store_true", help="only the stream design")
    args = parser.parse_args()
    require_wrk()
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)

    run = {"seconds": args.seconds, "connections": args.connections, "logs": logs}
    kaizen = bench_kaizen(mode="stream", **run)
    direct = None if args.skip_baseline else bench_kaizen(mode="direct", **run)
    baseline = None if args.skip_baseline else bench_baseline(**run)

    print(f"\ningest, {args.connections} connections x {args.seconds} s, wrk on loopback, {os.cpu_count()} cores")
    print(f"{'':28}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'sock err':>9}")
    rows = [("Kaizen (stream + consumer)", kaizen)]
    if baseline:
        rows += [("Kaizen (direct to database)", direct), ("baseline DRF create", baseline)]
    for name, r in rows:
        print(
            f"{name:28}{r['per_second']:>12,.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['non_2xx']:>9.0f}{r['socket_errors']:>9.0f}"
        )
    backlog = kaizen["backlog"]
    print(f"stream backlog each second (max {max(backlog, default=0)}): {backlog}")
    print(f"drained {kaizen['drain_after_s']:.1f} s after the load stopped")
    # wrk counts the answers it read; requests in flight when it stopped may still be stored.
    lost = max(0, kaizen["accepted"] - kaizen["stored"])
    print(
        f"database: {kaizen['stored']:,} occurrences stored for {kaizen['accepted']:,.0f} accepted "
        f"({kaizen['stored'] - kaizen['accepted']:+,.0f} in flight at the stop), {kaizen['issues']:,} issues, "
        f"issue counters {'match' if kaizen['counters_match'] else 'DO NOT match'} the stored occurrences"
    )
    print(
        f"target: >= 2,000/s, p99 <= 50 ms, zero lost -> {kaizen['per_second']:,.0f}/s, p99 {kaizen['p99']:.1f} ms, "
        f"{lost:,.0f} lost"
    )


if __name__ == "__main__":
    main()
