"""The web server and the threaded P0 worker borrow database connections from a bounded pool: a
flood of requests that each touch the database holds at most the pool's size, every request is
still answered, and PostgreSQL keeps connections for every other process."""

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from tests.healing.ingest.served import web_served
from tests.processes import ROOT, procfile_commands

SETTINGS = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({"pool": db.get("OPTIONS", {}).get("pool"), "max_age": db["CONN_MAX_AGE"]}))
"""


def database_settings(**env: str) -> dict:
    done = subprocess.run(  # noqa: S603 - this interpreter, our own settings
        [sys.executable, "-c", SETTINGS], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "kaizen_site.settings", "DEBUG": "1", **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_only_the_processes_the_procfile_sizes_use_a_pool():
    postgres = "postgres://postgres@127.0.0.1:5432/kaizen"
    assert database_settings(DATABASE_URL=postgres) == {"pool": None, "max_age": 60}
    assert database_settings(DATABASE_URL=postgres, DATABASE_POOL_SIZE="8") == {
        "pool": {"min_size": 1, "max_size": 8, "timeout": 10.0},
        "max_age": 0,  # Django refuses a pool with persistent connections
    }
    # SQLite, the embedded default, has no server connections to bound.
    assert database_settings(DATABASE_URL="", DATABASE_POOL_SIZE="8")["pool"] is None
    commands = procfile_commands()
    # Through env(1): the lines run after `exec`, which takes no variable assignments.
    assert commands["web"].startswith('exec env DATABASE_POOL_SIZE="${WEB_DB_CONNECTIONS:-16}" granian ')
    assert commands["critical"].startswith('exec env DATABASE_POOL_SIZE="${CRITICAL_THREADS:-16}" celery ')


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _other_connections(*, besides: int) -> int:
    """Connections to the test database, but this thread's and the `besides` backend's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND pid <> %s",
            [besides],
        )
        return cursor.fetchone()[0]


@pytest.mark.slow
def test_a_flood_of_database_requests_holds_at_most_the_pools_connections(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the pool bounds PostgreSQL connections")
    pool = 3
    test_thread = _backend_pid()
    before = _other_connections(besides=test_thread)  # what earlier tests' threads may still hold
    with web_served(tmp_path, WEB_DB_CONNECTIONS=str(pool)) as base:
        seen, done = [], threading.Event()

        def watch() -> None:  # the server's connections: all but this test's own
            while not done.is_set():
                seen.append(_other_connections(besides=test_thread))
                done.wait(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(max_workers=40) as pool_of_clients:  # public, and each reads the database
            statuses = list(pool_of_clients.map(
                lambda _: requests.get(f"{base}/api/v1/whats-new", timeout=30).status_code, range(400)
            ))  # fmt: skip
        done.set()
        watcher.join()
    assert statuses == [200] * 400
    assert 1 <= max(seen) - before <= pool, (before, seen)
