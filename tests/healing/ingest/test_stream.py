"""The Redis stream in front of the database: nothing accepted is lost, nothing counted twice."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from healing.ingest import consumer, outbox
from healing.ingest.accept import record_build, reports_accept
from healing.models import IngestDeadLetter, Issue, Occurrence
from healing.projects import project_for_key
from kaizen_site import redis_client
from tests.processes import database_url

ROOT = Path(__file__).resolve().parents[3]


def _reports(n: int, issues: int = 7):
    return [
        {"type": "ERROR", "message": f"boom {i % issues}", "fingerprint": [f"g{i % issues}"], "user": {"id": f"u{i}"}}
        for i in range(n)
    ]


def _accept(project_key, n: int, **kwargs):
    auth = project_for_key(project_key.public_key)
    for report in _reports(n, **kwargs):
        reports_accept(project=auth, reports=[report], source="native")


def _assert_exactly_once(n: int):
    assert Occurrence.objects.count() == n
    assert sum(Issue.objects.values_list("occurrence_count", flat=True)) == n
    assert sum(Issue.objects.values_list("affected_users", flat=True)) == n


class Crash(BaseException):
    """A consumer dying between the commit and the acknowledgement."""


def test_a_batch_stored_but_never_acknowledged_is_not_counted_twice(project_key, drain, monkeypatch):
    _accept(project_key, 120)

    def die(**kwargs):
        raise Crash

    monkeypatch.setattr(outbox, "issues_enqueue", die)  # runs after the commit, before XACK
    with pytest.raises(Crash):
        consumer.drain(stop=threading.Event(), consumer="dead", batch=50, until_empty=True)
    assert Occurrence.objects.count() == 50  # the first batch was committed...
    client = redis_client.get().client
    assert client.xpending(settings.KAIZEN_INGEST_STREAM, consumer.GROUP)["pending"] == 50  # ...but not acknowledged
    monkeypatch.undo()

    stats = drain(consumer="survivor", claim_idle_ms=0)
    assert (stats.claimed, stats.duplicates, stats.stored) == (50, 50, 70)
    _assert_exactly_once(120)
    assert client.xlen(settings.KAIZEN_INGEST_STREAM) == 0
    assert client.xpending(settings.KAIZEN_INGEST_STREAM, consumer.GROUP)["pending"] == 0


def test_a_restarted_consumer_rereads_its_own_pending_entries_first(project_key, drain, monkeypatch):
    _accept(project_key, 30)
    monkeypatch.setattr(outbox, "issues_enqueue", lambda **kwargs: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        consumer.drain(stop=threading.Event(), consumer="same", batch=10, until_empty=True)
    monkeypatch.undo()
    stats = drain(consumer="same")  # same name, long claim idle: its own pending come first
    assert stats.claimed == 0
    _assert_exactly_once(30)


def test_unreadable_entries_become_dead_letters(project_key, drain):
    _accept(project_key, 3)
    client = redis_client.get().client
    client.xadd(settings.KAIZEN_INGEST_STREAM, {"r": b"{not json"})
    client.xadd(settings.KAIZEN_INGEST_STREAM, {"other": b"x"})
    stats = drain()
    assert (stats.stored, stats.dead) == (3, 2)
    letters = IngestDeadLetter.objects.order_by("id")
    assert [bytes(letter.raw) for letter in letters] == [b"{not json", b'{"other":"x"}']
    assert all(letter.attempts == 1 and "unreadable" in letter.error for letter in letters)
    assert client.xlen(settings.KAIZEN_INGEST_STREAM) == 0
    _assert_exactly_once(3)


@pytest.mark.django_db(transaction=True)  # the consumer closes a failed connection and reopens it
def test_database_failure_leaves_the_batch_pending_and_retries(project_key, monkeypatch):
    from django.db import OperationalError

    from healing.ingest import store

    _accept(project_key, 5)
    real = store.reports_store
    calls = []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database restarting")
        return real(**kwargs)

    monkeypatch.setattr(consumer.store, "reports_store", flaky)
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()  # the loop waits 1 s after a failure, then retries
    consumer.drain(stop=stop, consumer="c1", block_ms=100)
    assert len(calls) >= 2
    _assert_exactly_once(5)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_consumer_killed_mid_batch_loses_nothing(project_key, drain):
    """A real consumer process, SIGKILLed while it drains; a new one finishes the job."""
    n = 3000
    auth = project_for_key(project_key.public_key)
    redis_client.get().append_within_quota(
        stream=settings.KAIZEN_INGEST_STREAM,
        quota_key="unused",
        quota=10**9,
        ttl=60,
        payloads=[
            __import__("orjson").dumps(record_build(project=auth, report=r, source="native")) for r in _reports(n)
        ],
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings", "DATABASE_URL": database_url()}
    consumer = subprocess.Popen(
        [sys.executable, "manage.py", "ingest_consumer", "--batch", "100", "--name", "doomed"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while Occurrence.objects.count() < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
    finally:
        consumer.kill()
    stored_before = Occurrence.objects.count()
    assert 0 < stored_before < n, "the consumer should be killed mid-stream"
    drain(consumer="rescuer", claim_idle_ms=0)
    _assert_exactly_once(n)
