"""Flag evaluation benchmark: in-process evaluations/s (snapshot vs. a query per evaluation) and
the HTTP endpoint's requests/s and p99 under 200 concurrent clients.

    .venv/bin/python bench/flags.py [--no-http] [--duration 15]

Uses the database in DATABASE_URL (default: PostgreSQL `kaizen_bench`, created and migrated if
missing) and REDIS_URL as the settings do. The HTTP part starts gunicorn on a free loopback port
and loads it with wrk. Targets: ≥ 300,000 in-process evaluations/s; HTTP p99 ≤ 20 ms.
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
    BIN,
    Processes,
    ensure_database,
    free_port,
    load_average,
    require_wrk,
    run_wrk,
    wait_http,
)  # fmt: skip

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench")

TARGET_EVALS_PER_SECOND = 300_000
TARGET_HTTP_P99_MS = 20.0
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


def bench_in_process(project_id: int, keys: list[str], users: list[str]) -> float:
    from flags.evaluate import flag_enabled

    flag_enabled(project_id=project_id, key=keys[0], user_id=users[0])  # load the snapshot
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for key in keys:
            for user in users:
                flag_enabled(project_id=project_id, key=key, user_id=user)
        best = max(best, len(keys) * len(users) / (time.perf_counter() - started))
    return best


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


def bench_http(public_key: str, duration: int) -> dict:
    require_wrk()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="flags-bench-"))
    procs = Processes(logs=workdir)
    script = workdir / "flags.lua"
    script.write_text(WRK_SCRIPT % (public_key, USERS))
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE": "kaizen_site.settings"}
    try:
        procs.start(name="gunicorn", env=env, argv=[
            str(BIN / "gunicorn"), "kaizen_site.wsgi", "-w", "3", "-b", f"127.0.0.1:{port}",
        ])  # fmt: skip
        wait_http(url=f"{base_url}/api/v1/flags?key={public_key}&user=warm-up", procs=procs, name="gunicorn")
        run_wrk(url=base_url, script=script, connections=30, seconds=2)  # warm every worker's snapshot first
        figures = run_wrk(url=base_url, script=script, connections=200, seconds=duration)
    finally:
        procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    return figures


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-http", action="store_true", help="skip the gunicorn + wrk part")
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

    in_process = bench_in_process(project.id, keys, users)
    per_query = bench_db(project.id, keys, users)
    print(f"in-process, {FLAGS} flags × {USERS:,} users = {FLAGS * USERS:,} evaluations (best of 3):")
    print(f"  snapshot          {in_process:>12,.0f} evaluations/s   target ≥ {TARGET_EVALS_PER_SECOND:,}: "
          f"{verdict(in_process >= TARGET_EVALS_PER_SECOND)}")  # fmt: skip
    print(f"  query per eval    {per_query:>12,.0f} evaluations/s   baseline; "
          f"the snapshot is ×{in_process / per_query:,.0f}")  # fmt: skip

    if args.no_http:
        return
    http = bench_http(public_key, args.duration)
    print(f"HTTP GET /api/v1/flags?user=… (all {FLAGS} flags for one user), gunicorn -w 3, "
          f"wrk -c200 -t2 -d{args.duration}s:")  # fmt: skip
    print(f"  requests/s        {http['rps']:>12,.0f}")
    print(f"  latency           p50 {http['p50']:.1f} ms   p90 {http['p90']:.1f} ms   p99 {http['p99']:.1f} ms   "
          f"target p99 ≤ {TARGET_HTTP_P99_MS:.0f} ms: {verdict(http['p99'] <= TARGET_HTTP_P99_MS)}")  # fmt: skip
    if http["non_2xx"] or http["socket_errors"]:
        print(f"  non-2xx responses {http['non_2xx']}, socket errors {http['socket_errors']}")
    print(f"machine: {load_average()} at end")


if __name__ == "__main__":
    main()
