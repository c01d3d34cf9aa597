"""Flag evaluation benchmark: in-process evaluations/s against the bare bucket call (the floor no
evaluation can beat) and a query per evaluation, then the HTTP endpoint at a fixed offered load
(open loop) and at its closed-loop maximum.

    .venv/bin/python bench/flags.py [--no-http] [--duration 15] [--rate 1000]

Uses the database in DATABASE_URL (default: PostgreSQL `kaizen_bench`, created and migrated if
missing) and Redis db 6 (BENCH_REDIS_URL), never the databases the test suite flushes. The HTTP
part starts the Procfile's web server (2 processes) on a free loopback port. Open loop: requests
due at a fixed rate, each timed from when it was due (bench.harness.open_loop_get, so a stall
counts for every request it delays); closed loop: wrk, 200 connections, as fast as answers come.
Targets: in-process ≥ 80 % of the bare bucket rate measured in the same run; HTTP p99 ≤ 20 ms at
1,000 requests/s offered.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import (  # noqa: E402
    Processes,
    ensure_database,
    free_port,
    load_average,
    open_loop_get,
    procfile_argv,
    require_wrk,
    run_wrk,
    wait_http,
)  # fmt: skip

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")

TARGET_SHARE_OF_BUCKET = 0.80
TARGET_HTTP_P99_MS = 20.0
OFFERED_RATE = 1000
FLAGS, USERS = 50, 10_000
SLUG = "flags-bench"


def setup_data():
    from flags import services
    from healing.models import Project
    from healing.projects import project_create

    Project.objects.filter(slug=SLUG).delete()
    project, issued = project_create(slug=SLUG, name="Flags benchmark", actor="bench")
    keys = []
    for n in range(FLAGS):
        key = f"flag-{n:02d}"
        flag = services.flag_create(
            project=project, key=key, actor="bench", enabled=n % 5 != 0, rollout_percentage=(n * 7) % 101
        )
        if n % 10 == 1:
            services.flag_kill(flag=flag, actor="bench", why="bench")
        if n % 4 == 0:  # a quarter of the flags carry overrides, as canaries do
            for user in range(0, USERS, 500):
                services.override_set(flag=flag, user_id=f"user-{user}", enabled=True, actor="bench")
        keys.append(key)
    return project, issued.key.public_key, keys


# Rounds of each, in turns: the best of a few rounds still moved by a tenth between runs on a
# shared machine whose speed changes by the second; the best of more comes closer to each one's
# true rate.
ROUNDS = 15


def bench_in_process(project_id: int, keys: list[str], users: list[str]) -> tuple[float, float]:
    """Best of ROUNDS of the evaluation and of the bare bucket call, taken in turns so that both
    see the same machine (its load changes by the second)."""
    from flags.evaluate import bucket, flag_enabled

    flag_enabled(project_id=project_id, key=keys[0], user_id=users[0])  # load the snapshot
    groups = [f"group-{key}" for key in keys]
    best_eval = best_bucket = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for key in keys:
            for user in users:
                flag_enabled(project_id=project_id, key=key, user_id=user)
        best_eval = max(best_eval, len(keys) * len(users) / (time.perf_counter() - started))
        started = time.perf_counter()
        for group in groups:
            for user in users:
                bucket(group_id=group, user_id=user)
        best_bucket = max(best_bucket, len(groups) * len(users) / (time.perf_counter() - started))
    return best_eval, best_bucket


def db_flag_enabled(*, project_id: int, key: str, user_id: str) -> bool:
    """The baseline: the same rules, reading the flag and the user's override per evaluation."""
    import time as _time

    from flags.evaluate import bucket
    from flags.models import Flag, Override

    flag = (
        Flag.objects.filter(project_id=project_id, key=key)
        .values("id", "killed", "enabled", "rollout_percentage", "group_id")
        .first()
    )
    if flag is None or flag["killed"]:
        return False
    override = Override.objects.filter(flag_id=flag["id"], user_id=user_id).values("enabled", "expires_at").first()
    if override and (override["expires_at"] is None or override["expires_at"].timestamp() > _time.time()):
        return override["enabled"]
    if not flag["enabled"]:
        return False
    pct = flag["rollout_percentage"]
    return pct > 0 and bucket(group_id=flag["group_id"], user_id=user_id) <= pct


def bench_db(project_id: int, keys: list[str], users: list[str], seconds: float = 5.0) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for key in keys:
            db_flag_enabled(project_id=project_id, key=key, user_id=users[count % len(users)])
            count += 1
    return count / (time.perf_counter() - started)


WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/flags?key=%s&user=user-" .. (n %% %d))
end
"""


def bench_http(public_key: str, duration: int, rate: int) -> tuple[dict, dict]:
    require_wrk()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="flags-bench-"))
    procs = Processes(logs=workdir)
    script = workdir / "flags.lua"
    script.write_text(WRK_SCRIPT % (public_key, USERS))
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
           "PORT": str(port), "WEB_CONCURRENCY": "2"}  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    paths = [f"/api/v1/flags?key={public_key}&user=user-{n}" for n in range(USERS)]
    try:
        procs.start(name="web", env=env, argv=procfile_argv(name="web"))
        wait_http(url=f"{base_url}/api/v1/flags?key={public_key}&user=warm-up", procs=procs, name="web")
        run_wrk(url=base_url, script=script, connections=30, seconds=2)  # warm every worker's snapshot first
        open_loop = open_loop_get(url=base_url, paths=paths, rate=rate, seconds=duration)
        closed_loop = run_wrk(url=base_url, script=script, connections=200, seconds=duration)
    finally:
        procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    return open_loop, closed_loop


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    parser.add_argument("--rate", type=int, default=OFFERED_RATE, help="open-loop requests/s offered")
    parser.add_argument("--duration", type=int, default=15, help="wrk run length in seconds")
    args = parser.parse_args()

    ensure_database(url=os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    project, public_key, keys = setup_data()
    users = [f"user-{n}" for n in range(USERS)]
    print(f"machine: {os.cpu_count()} CPUs, {load_average()} at start")

    in_process, bare = bench_in_process(project.id, keys, users)
    per_query = bench_db(project.id, keys, users)
    share = in_process / bare
    print(f"in-process, {FLAGS} flags × {USERS:,} users = {FLAGS * USERS:,} evaluations (best of {ROUNDS}, in turns):")
    print(f"  flag_enabled      {in_process:>12,.0f} evaluations/s")
    print(f"  bare bucket call  {bare:>12,.0f} calls/s (unsigned MurmurHash3 of group:user, mod 100)")
    met = verdict(share >= TARGET_SHARE_OF_BUCKET)
    print(f"  target ≥ {TARGET_SHARE_OF_BUCKET:.0%} of the bare bucket rate: {share:.0%} {met}")
    print(f"  query per eval    {per_query:>12,.0f} evaluations/s   baseline; "
          f"the snapshot is ×{in_process / per_query:,.0f}")  # fmt: skip

    if args.no_http:
        return
    open_loop, closed = bench_http(public_key, args.duration, args.rate)
    print(f"HTTP GET /api/v1/flags?user=… (all {FLAGS} flags for one user), the Procfile's web server, 2 processes:")
    print(f"  open loop, {args.rate:,}/s offered for {args.duration} s: {open_loop['rate']:,.0f}/s answered, "
          f"{open_loop['completed']:,} of {open_loop['sent']:,} ({open_loop['errors']} errors, "
          f"statuses {open_loop['statuses']})")  # fmt: skip
    print(f"    latency from when due: p50 {open_loop['p50']:.1f} ms   p90 {open_loop['p90']:.1f} ms   "
          f"p99 {open_loop['p99']:.1f} ms   max {open_loop['max']:.1f} ms")  # fmt: skip
    print(f"    target p99 ≤ {TARGET_HTTP_P99_MS:.0f} ms: {verdict(open_loop['p99'] <= TARGET_HTTP_P99_MS)}")
    print(f"  closed loop, wrk -c200 -t2 -d{args.duration}s: {closed['rps']:,.0f} requests/s, "
          f"p50 {closed['p50']:.1f} ms   p90 {closed['p90']:.1f} ms   p99 {closed['p99']:.1f} ms")  # fmt: skip
    if closed["non_2xx"] or closed["socket_errors"]:
        print(f"  non-2xx responses {closed['non_2xx']}, socket errors {closed['socket_errors']}")
    print(f"machine: {load_average()} at end")


if __name__ == "__main__":
    main()
