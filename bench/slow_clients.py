"""Slow clients: connections that trickle their bodies must not starve ingest or /healthz.

What runs: the API on a WSGI server and one ingest consumer, on a scratch PostgreSQL database and
Redis db 3 (as bench/ingest.py; the two are not run at the same time). For each server compared
(granian, as the Procfile's `web:` line starts it, and gunicorn with gthread workers, both at
2 processes x the Procfile's 64 threads at most; --threads changes it), two runs of the normal
load (wrk, bench/ingest.lua):
  1. alone;
  2. while 64 more connections each announce a report body and send it at 1 byte per second
     for the whole run (no buffering proxy in front, as the issue's incident had none).
During both, /healthz is asked once a second (2 s timeout) and each second's answer is printed.

Run: .venv/bin/python bench/slow_clients.py [--seconds 30] [--slow 64] [--servers granian,gunicorn]
Targets: ingest p99 with trickling within 1.5x of the run without; /healthz answers every second.
"""

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import (  # noqa: E402
    ROOT,
    SERVERS,
    WEB_THREADS,
    WEB_WORKERS,
    Processes,
    demo_project_ready,
    load_average,
    recreate_database,
    require_wrk,
    run_wrk,
    wait_http,
    web_argv,
)  # fmt: skip
from bench.ingest import PG, PORT, PYTHON, REDIS_URL, STREAM, URL, env_for  # noqa: E402

DATABASE = "kaizen_bench_slow_clients"
TARGET_P99_RATIO = 1.5
BODY = b'{"type":"ERROR","message":"a report sent one byte a second","route":"/slow"}'


def trickle(*, key: str, stop: threading.Event, sent: list[int], index: int) -> None:
    """One slow client: the headers at once, then the body at 1 byte/s until `stop` (or its end)."""
    try:
        sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    except OSError:
        return
    with sock:
        head = (
            f"POST /api/v1/issues HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nContent-Type: application/json\r\n"
            f"X-Kaizen-Key: {key}\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        try:
            sock.sendall(head.encode())
            for byte in BODY:
                if stop.wait(1.0):
                    return
                sock.sendall(bytes([byte]))
                sent[index] += 1
        except OSError:
            return


def probe_health(*, stop: threading.Event, results: list[str]) -> None:
    """GET /healthz once a second; each second's status and latency (or what went wrong)."""
    second = 0
    started = time.monotonic()
    while not stop.is_set():
        second += 1
        asked = time.monotonic()
        try:
            answer = requests.get(f"{URL}/healthz", timeout=2)
            results.append(f"{second}s {answer.status_code} {1000 * (time.monotonic() - asked):.0f}ms")
        except requests.RequestException as exc:
            results.append(f"{second}s FAILED ({type(exc).__name__})")
        stop.wait(max(0.0, started + second - time.monotonic()))


def load_run(*, key: str, seconds: int, connections: int, slow: int) -> dict:
    stop = threading.Event()
    health: list[str] = []
    sent = [0] * slow
    threads = [threading.Thread(target=probe_health, kwargs={"stop": stop, "results": health})]
    threads += [
        threading.Thread(target=trickle, kwargs={"key": key, "stop": stop, "sent": sent, "index": n}, daemon=True)
        for n in range(slow)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0 if slow else 0.0)  # the slow connections are open before the load starts
    try:
        figures = run_wrk(
            url=URL, script=ROOT / "bench/ingest.lua", connections=connections, seconds=seconds,
            env={**os.environ, "KEY": key},
        )  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    answered = sum(1 for line in health if " 200 " in line)
    return {**figures, "health": health, "health_ok": answered == len(health), "slow_bytes": sum(sent)}


def bench_server(
    *, server: str, seconds: int, connections: int, slow: int, threads: int, logs: Path
) -> tuple[dict, dict]:
    recreate_database(url=f"{PG}/{DATABASE}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = env_for(
        DATABASE_URL=f"{PG}/{DATABASE}", REDIS_URL=REDIS_URL, KAIZEN_INGEST_STREAM=STREAM, KAIZEN_INGEST_MODE="stream"
    )
    key = demo_project_ready(env=env)
    procs = Processes(logs=logs)
    try:
        argv = web_argv(server=server, app="kaizen_site.wsgi:application", port=PORT, threads=threads)
        procs.start(name="web", env=env, argv=argv)
        procs.start(name="consumer", argv=[PYTHON, "manage.py", "ingest_consumer"], env=env)
        wait_http(url=f"{URL}/healthz", procs=procs, name="web")
        run_wrk(url=URL, script=ROOT / "bench/ingest.lua", connections=connections, seconds=3,
                env={**os.environ, "KEY": key})  # warm-up  # fmt: skip
        alone = load_run(key=key, seconds=seconds, connections=connections, slow=0)
        trickled = load_run(key=key, seconds=seconds, connections=connections, slow=slow)
    finally:
        procs.stop_all()
    return alone, trickled


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32, help="normal load connections (wrk)")
    parser.add_argument("--slow", type=int, default=64, help="connections trickling their body")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--threads", type=int, default=WEB_THREADS, help="Python threads per server process")
    args = parser.parse_args()
    require_wrk()
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, {load_average()} at start")
    for server in args.servers.split(","):
        alone, trickled = bench_server(
            server=server,
            seconds=args.seconds,
            connections=args.connections,
            slow=args.slow,
            threads=args.threads,
            logs=logs,
        )
        print(f"\n{server} ({WEB_WORKERS} processes x {args.threads} threads), wrk -c{args.connections} "
              f"{args.seconds} s, {load_average()}")  # fmt: skip
        for name, r in (("alone", alone), (f"+{args.slow} slow clients", trickled)):
            print(f"  {name:18} {r['rps']:>8,.0f} req/s  p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  "
                  f"non-2xx {r['non_2xx']:.0f}  socket errors {r['socket_errors']:.0f}")  # fmt: skip
        print(f"  slow clients sent {trickled['slow_bytes']} body bytes in all")
        answered = trickled["requests"] > 0 and alone["requests"] > 0
        ratio = trickled["p99"] / alone["p99"] if answered else float("inf")
        met = verdict(ratio <= TARGET_P99_RATIO)
        print(f"  target p99 within {TARGET_P99_RATIO}x of the run alone: {ratio:.2f}x {met}")
        for name, r in (("alone", alone), ("with slow clients", trickled)):
            print(f"  /healthz each second, {name}: {', '.join(r['health'])}")
            print(f"  target /healthz answers every second ({name}): {verdict(r['health_ok'])}")


if __name__ == "__main__":
    main()
