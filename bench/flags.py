"""Flag evaluation benchmark: in-process evaluations/s (snapshot vs. a query per evaluation) and
the HTTP endpoint's requests/s and p99 under 200 concurrent clients.

    .venv/bin/python bench/flags.py [--no-http] [--duration 15]

Uses the database in DATABASE_URL (default: PostgreSQL `kaizen_bench`, created and migrated if
missing) and REDIS_URL as the settings do. The HTTP part starts gunicorn on a free loopback port
and loads it with wrk. Targets: ≥ 300,000 in-process evaluations/s; HTTP p99 ≤ 20 ms.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench")

TARGET_EVALS_PER_SECOND = 300_000
TARGET_HTTP_P99_MS = 20.0
FLAGS, USERS = 50, 10_000
SLUG = "flags-bench"


def ensure_database(url: str) -> None:
    import dj_database_url
    import psycopg
    from psycopg import sql

    db = dj_database_url.parse(url)
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    params = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"], "dbname": "postgres"}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            print(f"created database {db['NAME']}")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


WRK_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/flags?key=%s&user=user-" .. (n %% %d))
end
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict:
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        figures[f"p{pct}"] = _ms(*match.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    figures["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    figures["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    return figures


def bench_http(public_key: str, duration: int) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found (Debian: apt-get install wrk)")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="flags-bench-"))
    script = workdir / "flags.lua"
    script.write_text(WRK_SCRIPT % (public_key, USERS))
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE": "kaizen_site.settings"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with (workdir / "gunicorn.log").open("w") as log:
        server = subprocess.Popen(  # noqa: S603 - our own server, our own arguments
            [str(gunicorn), "kaizen_site.wsgi", "-w", "3", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api/v1/flags?key={public_key}&user=warm-up"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"gunicorn did not come up; see {workdir / 'gunicorn.log'}")
            time.sleep(0.2)
        # Warm every worker's snapshot before measuring.
        subprocess.run([wrk, "-c30", "-t2", "-d2s", "-s", str(script), f"http://127.0.0.1:{port}"],  # noqa: S603
                       capture_output=True, check=True)  # fmt: skip
        run = subprocess.run(  # noqa: S603
            [wrk, "-c200", "-t2", f"-d{duration}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return {**parse_wrk(run.stdout), "raw": run.stdout}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-http", action="store_true", help="skip the gunicorn + wrk part")
    parser.add_argument("--duration", type=int, default=15, help="wrk run length in seconds")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    project, public_key, keys = setup_data()
    users = [f"user-{n}" for n in range(USERS)]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")

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
    load = os.getloadavg()
    print(f"machine: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")


if __name__ == "__main__":
    main()
