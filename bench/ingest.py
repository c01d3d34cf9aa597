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
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
PG = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/3"
STREAM = "bench:ingest"
KAIZEN_DB, BASELINE_DB = "kaizen_bench_ingest", "kaizen_bench_baseline"
PORT = 8311


def recreate_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DEBUG="0", SECRET_KEY="bench", PORT=str(PORT), PATH=f"{BIN}:{env.get('PATH', '')}", **extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


def run_wrk(*, key: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(ROOT / "bench/ingest.lua"),
         f"http://127.0.0.1:{PORT}"],
        env={**os.environ, "KEY": key}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def number(pattern: str, default: float = 0.0) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else default

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    total = number(r"(\d+) requests in")
    rejected = number(r"Non-2xx or 3xx responses: (\d+)")
    return {
        "requests": total,
        "accepted": total - rejected,
        "rejected": rejected,
        "socket_errors": errors,
        "per_second": (total - rejected) / seconds,
        "p50": millis("50"),
        "p99": millis("99"),
    }


def sample_backlog(client: redis.Redis, stop_event: threading.Event, samples: list[int]) -> None:
    while not stop_event.wait(1.0):
        samples.append(client.xlen(STREAM))


def bench_kaizen(*, seconds: int, connections: int, logs: Path) -> dict:
    recreate_database(KAIZEN_DB)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    env = env_for(DATABASE_URL=f"{PG}/{KAIZEN_DB}", REDIS_URL=REDIS_URL, KAIZEN_INGEST_STREAM=STREAM)
    manage(env, "migrate", "--noinput")
    manage(env, "kaizen_demo")
    with psycopg.connect(f"{PG}/{KAIZEN_DB}", autocommit=True) as conn:
        conn.execute("UPDATE healing_project SET rate_limit_per_minute = 1000000000")
        key = conn.execute("SELECT public_key FROM healing_projectkey WHERE is_active").fetchone()[0]
    web = start([str(BIN / "gunicorn"), "kaizen_site.wsgi", "--config", "kaizen_site/gunicorn.conf.py"], env, logs / "web.log")
    consumer = start([PYTHON, "manage.py", "ingest_consumer"], env, logs / "consumer.log")
    try:
        wait_http(f"http://127.0.0.1:{PORT}/healthz")
        run_wrk(key=key, seconds=3, connections=connections)  # warm-up: connections, caches
        wait_drained(client)
        before = stored_count(KAIZEN_DB)
        stop_event, backlog = threading.Event(), []
        sampler = threading.Thread(target=sample_backlog, args=(client, stop_event, backlog))
        sampler.start()
        result = run_wrk(key=key, seconds=seconds, connections=connections)
        stop_event.set()
        sampler.join()
        drained_at = time.monotonic()
        wait_drained(client)
        result["drain_after_s"] = time.monotonic() - drained_at
        result["backlog"] = backlog
    finally:
        stop(web)
        stop(consumer)
    result["stored"] = stored_count(KAIZEN_DB) - before
    with psycopg.connect(f"{PG}/{KAIZEN_DB}") as conn:
        result["issues"] = conn.execute("SELECT count(*) FROM healing_issue").fetchone()[0]
        counted = conn.execute("SELECT coalesce(sum(occurrence_count), 0), count(*) FROM healing_issue").fetchone()
        result["counters_match"] = counted[0] == conn.execute("SELECT count(*) FROM healing_occurrence").fetchone()[0]
    return result


def wait_drained(client: redis.Redis) -> None:
    while client.xlen(STREAM) or client.xpending(STREAM, "kaizen-store")["pending"]:
        time.sleep(0.1)


def stored_count(database: str) -> int:
    with psycopg.connect(f"{PG}/{database}") as conn:
        return conn.execute("SELECT count(*) FROM healing_occurrence").fetchone()[0]


def bench_baseline(*, seconds: int, connections: int, logs: Path) -> dict:
    recreate_database(BASELINE_DB)
    env = env_for(DJANGO_SETTINGS_MODULE="bench.baseline.settings", BASELINE_DB=BASELINE_DB)
    subprocess.run(
        [PYTHON, "-m", "django", "migrate", "--run-syncdb", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    web = start(
        [str(BIN / "gunicorn"), "bench.baseline.wsgi", "--config", "kaizen_site/gunicorn.conf.py"], env, logs / "baseline.log"
    )
    try:
        wait_http(f"http://127.0.0.1:{PORT}/api/v1/issues")
        run_wrk(key="", seconds=3, connections=connections)
        result = run_wrk(key="", seconds=seconds, connections=connections)
    finally:
        stop(web)
    with psycopg.connect(f"{PG}/{BASELINE_DB}") as conn:
        result["stored"] = conn.execute("SELECT count(*) FROM baseline_report").fetchone()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)

    kaizen = bench_kaizen(seconds=args.seconds, connections=args.connections, logs=logs)
    baseline = None if args.skip_baseline else bench_baseline(seconds=args.seconds, connections=args.connections, logs=logs)

    print(f"\ningest, {args.connections} connections x {args.seconds} s, wrk on loopback, {os.cpu_count()} cores")
    print(f"{'':28}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'sock err':>9}")
    rows = [("Kaizen (stream + consumer)", kaizen)] + ([("baseline DRF create", baseline)] if baseline else [])
    for name, r in rows:
        print(f"{name:28}{r['per_second']:>12,.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['rejected']:>9.0f}{r['socket_errors']:>9.0f}")
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
