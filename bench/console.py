"""Console benchmark: the dashboard (the admin index) and the issue list, rendered through Django's
test Client as a signed-in superuser, at three sizes of data up to 100,000 issues and 1,000,000
occurrences: render time p50/p95 and the number of SQL queries per page.

    .venv/bin/python bench/console.py [--renders 30]

Uses its own PostgreSQL database (DATABASE_URL, default `kaizen_bench_console`, dropped and
created afresh) and REDIS_URL as the settings do. Rows are generated inside PostgreSQL
(generate_series), not sent from Python. Targets: p95 ≤ 300 ms at the largest size, and a query
count that is the same at every size.

The dashboard asks the Celery workers which queues they take by one broadcast that waits its whole
timeout, and reads the trend charts' past days once per cache period; both are shared through the
cache, so the timed renders read them cached (as every render but one per period does), and one
render with the cache emptied is printed beside them ("cold").
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import load_average, recreate_database  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench_console")
os.environ["ALLOWED_HOSTS"] = "testserver"  # the test Client's host
os.environ["KAIZEN_OWNER_EMAILS"] = "owner@example.com"  # the console admits only the owner's addresses
os.environ.setdefault("KAIZEN_LOG_JSON", "0")

TARGET_P95_MS = 300.0
# (issues, occurrences) after each step; the last is the size the issue's target is stated at.
SIZES = ((1_000, 10_000), (10_000, 100_000), (100_000, 1_000_000))
PAGES = (("dashboard", "/admin/"), ("issue list", "/admin/healing/issue/"))
DAYS = 30  # issues first seen over the last 30 days

ISSUES_SQL = """
INSERT INTO healing_issue (id, project_id, fingerprint, grouping, type, severity, base_severity, severity_pinned,
    title, culprit, stage, first_seen, last_seen, occurrence_count, affected_users, times_reopened, resolved_at,
    enqueue_state, enqueue_attempts, stage_entered_at)
SELECT md5('bench-issue-' || g)::uuid, %(project)s, md5('bench-issue-' || g), 'bench ' || g,
    (ARRAY['ERROR', 'SILENT_FAILURE', 'SLOW_RESPONSE', 'AUTH_ISSUE'])[1 + g %% 4],
    (ARRAY['P0', 'P1', 'P2', 'P2', 'P3', 'P3', 'P3'])[1 + g %% 7], 'P2', false,
    'TypeError: cannot read properties of undefined (reading ''items'') #' || g, '/checkout/step-' || (g %% 50),
    stage, first_seen, last_seen, 10, 1 + g %% 40, 0,
    CASE WHEN stage = 'resolved' THEN first_seen + (last_seen - first_seen) / 2 END, 'none', 0, last_seen
FROM (
    SELECT g, first_seen, first_seen + random() * (now() - first_seen) AS last_seen,
        (ARRAY['resolved', 'resolved', 'resolved', 'resolved', 'resolved', 'resolved', 'resolved', 'resolved',
               'resolved', 'resolved', 'resolved', 'resolved', 'mitigated', 'mitigated', 'deployed', 'detected',
               'diagnosing', 'escalated', 'escalated', 'aborted'])[1 + g %% 20] AS stage
    FROM (SELECT g, now() - random() * make_interval(days => %(days)s) AS first_seen
          FROM generate_series(%(start)s, %(stop)s - 1) AS g) AS s
) AS t
"""

OCCURRENCES_SQL = """
INSERT INTO healing_occurrence (event_id, project_id, issue_id, source, received_at, user_id, user_email, session_id,
    url, route, release, environment, message, payload)
SELECT md5('bench-event-' || g)::uuid, %(project)s, md5('bench-issue-' || (g %% %(issues)s))::uuid, 'native',
    now() - random() * make_interval(days => %(days)s), 'user-' || (g %% 5000), '', 's-' || (g %% 20000),
    'https://shop.example/checkout', '/checkout', '1.0.0', 'production', 'cannot read properties of undefined',
    '{"type": "ERROR"}'::jsonb
FROM generate_series(%(start)s, %(stop)s - 1) AS g
"""


SESSIONS_SQL = """
INSERT INTO healing_usersession (project_id, session_id, user_id, user_name, user_email, user_agent, created_at,
    last_seen_at)
SELECT %(project)s, 'bench-session-' || g, 'user-' || (g %% 5000), '', '', 'bench', seen, seen
FROM (SELECT g, now() - random() * make_interval(days => %(days)s) AS seen
      FROM generate_series(%(start)s, %(stop)s - 1) AS g) AS s
"""


def setup():
    import django

    recreate_database(url=os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(*, project_id: int, issues: tuple[int, int], occurrences: tuple[int, int]) -> float:
    """Grow the tables from the first size to the second of each pair (as many user sessions as
    issues); returns the seconds taken."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(ISSUES_SQL, {"project": project_id, "start": issues[0], "stop": issues[1], "days": DAYS})
        cursor.execute(SESSIONS_SQL, {"project": project_id, "start": issues[0], "stop": issues[1], "days": DAYS})
        cursor.execute(
            OCCURRENCES_SQL,
            {"project": project_id, "issues": issues[1], "start": occurrences[0], "stop": occurrences[1], "days": DAYS},
        )
        # What autovacuum does to a live database: fresh statistics, and the visibility map that
        # lets the dashboard's counts read only the index.
        cursor.execute("VACUUM ANALYZE healing_issue")
        cursor.execute("VACUUM ANALYZE healing_occurrence")
        cursor.execute("VACUUM ANALYZE healing_usersession")
    return time.perf_counter() - started


def measure(*, client, path: str, renders: int) -> dict:
    """`renders` timed GETs after three warm-ups; the query count is each render's (all equal)."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        assert client.get(path).status_code == 200, path
    times, sql_times, counts = [], [], set()
    for _ in range(renders):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (path, response.status_code)
        times.append(elapsed)
        sql_times.append(sum(float(query["time"]) for query in queries.captured_queries) * 1000)
        counts.add(len(queries))
    times.sort()
    # Once per cache period one render reads the trends' past days (and asks the workers) afresh.
    cache.clear()
    started = time.perf_counter()
    assert client.get(path).status_code == 200, path
    cold = (time.perf_counter() - started) * 1000
    return {"p50": statistics.median(times), "p95": times[max(0, int(len(times) * 0.95) - 1)], "queries": counts,
            "sql": statistics.median(sql_times), "cold": cold}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=30, help="timed renders per page and size")
    args = parser.parse_args()

    setup()
    from django.test import Client

    from healing.projects import project_create
    from kaizen_site.dashboard import WORKERS_TIMEOUT, workers_ask
    from tests.owner import owner_create, owner_verify

    project, _ = project_create(slug="console-bench", name="Console benchmark", actor="bench")
    owner = owner_create(username="bench-owner", email="owner@example.com")
    client = owner_verify(Client(), owner)  # signed in past the second factor, as the owner is

    started = time.perf_counter()
    workers = workers_ask()
    broadcast_ms = (time.perf_counter() - started) * 1000

    print(f"console render: Django test Client, signed-in superuser, {args.renders} renders per page and size")
    print(load_average())
    print(f"{'issues':>9} {'occurrences':>12}  {'page':<11} {'p50 ms':>7} {'p95 ms':>7} {'SQL p50':>8} {'queries':>8}"
          f" {'cold ms':>8}   fill")  # fmt: skip
    results = {}
    previous = (0, 0)
    for size in SIZES:
        took = fill(project_id=project.id, issues=(previous[0], size[0]), occurrences=(previous[1], size[1]))
        previous = size
        for name, path in PAGES:
            figures = measure(client=client, path=path, renders=args.renders)
            results[(size, name)] = figures
            queries = ",".join(str(n) for n in sorted(figures["queries"]))
            print(f"{size[0]:>9,} {size[1]:>12,}  {name:<11} {figures['p50']:>7.1f} {figures['p95']:>7.1f} "
                  f"{figures['sql']:>8.1f} {queries:>8} {figures['cold']:>8.1f}   {took:.1f} s")  # fmt: skip

    largest = SIZES[-1]
    print()
    print(f"target: p95 ≤ {TARGET_P95_MS:.0f} ms at {largest[0]:,} issues / {largest[1]:,} occurrences, "
          "and the same query count at every size")  # fmt: skip
    for name, _ in PAGES:
        p95 = results[(largest, name)]["p95"]
        # The steady state: a render now and then also refills the cache (two more queries), which
        # depends on the clock, not on the data.
        counts = [min(results[(size, name)]["queries"]) for size in SIZES]
        flat = "flat" if len(set(counts)) == 1 else "GROWS"
        verdict = "met" if p95 <= TARGET_P95_MS and flat == "flat" else "NOT met"
        print(f"  {name:<11} p95 {p95:.1f} ms, query count {flat}: {verdict}")
    print(f"worker broadcast (once per cache period, shared by every console): {broadcast_ms:.0f} ms "
          f"(timeout {WORKERS_TIMEOUT} s; {len(workers)} queues answered)")  # fmt: skip
    print("SQL p50: the time of the render's queries; the rest is Python rendering the page")
    print("cold: one render right after the cache is emptied (the trends' past days and the workers asked afresh)")
    print(load_average())


if __name__ == "__main__":
    main()
