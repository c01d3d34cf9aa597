"""Ingest under faults: a report the database refuses never holds the others back, a Redis
outage costs no report and no 5xx, and only a database that is down too makes ingest answer 503.

Redis outages run against a redis-server each test starts on a free port (no persistence, as a
restart that loses the stream and its group) and stops."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection

from healing.ingest import accept, consumer
from healing.ingest.accept import record_build
from healing.models import AuditEntry, IngestDeadLetter, Issue, Occurrence, issue_id_for
from healing.projects import project_for_key
from kaizen_site import redis_client
from tests.processes import database_url, free_port

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def _record(auth, message: str) -> dict:
    return record_build(project=auth, report={"type": "ERROR", "message": message}, source="native")


def _append(entries: list[dict[bytes, bytes]]) -> None:
    client = redis_client.get().client
    for fields in entries:
        client.xadd(settings.KAIZEN_INGEST_STREAM, fields)


def _backlog() -> tuple[int, int]:
    client = redis_client.get().client
    name = settings.KAIZEN_INGEST_STREAM
    return client.xlen(name), client.xpending(name, consumer.GROUP)["pending"]


# --- One bad entry, the rest stored -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # foreign keys are checked at commit
def test_entries_the_database_refuses_are_dead_lettered_and_the_batch_goes_on(project_key, scrape, drain):
    auth = project_for_key(project_key.public_key)
    good = [_record(auth, f"good {i % 4}") for i in range(40)]
    # A report whose project was deleted while it waited in the stream: the foreign key fails at
    # commit, for the whole batch it is in.
    orphan = _record(auth, "orphan") | {"project_id": 10**9}
    orphan["issue_id"] = str(issue_id_for(project_id=10**9, fingerprint=orphan["fingerprint"]))
    # A record no report can make (a bug, a hand-written entry): fails before the database.
    broken = _record(auth, "broken") | {"issue_id": "not-a-uuid"}
    poisons = [orphan, broken]
    if connection.vendor == "postgresql":  # PostgreSQL cannot store NUL in text; SQLite can
        poisons.append(_record(auth, "nul") | {"report": {"type": "ERROR", "message": "a\x00b"}})
    entries = [{b"r": orjson.dumps(r)} for r in good[:20] + poisons + good[20:]]
    _append(entries)

    stats = drain(batch=100)

    assert (stats.stored, stats.dead) == (40, len(poisons))
    assert Occurrence.objects.count() == 40
    assert sum(Issue.objects.values_list("occurrence_count", flat=True)) == 40
    assert _backlog() == (0, 0)
    letters = {letter.event_id.hex: letter for letter in IngestDeadLetter.objects.all()}
    assert set(letters) == {uuid.UUID(p["event_id"]).hex for p in poisons}
    for poison in poisons:
        letter = letters[uuid.UUID(poison["event_id"]).hex]
        assert letter.attempts == consumer.ATTEMPTS_ALONE
        assert orjson.loads(bytes(letter.raw)) == poison
        assert letter.project_id is None if poison is orphan else letter.project_id == project_key.project_id
    assert "IntegrityError" in letters[uuid.UUID(orphan["event_id"]).hex].error
    assert "ValueError" in letters[uuid.UUID(broken["event_id"]).hex].error
    metrics = scrape()
    assert f"kaizen_ingest_dead_letters_total {float(len(poisons))}" in metrics


def test_a_dead_letter_stored_again_counts_once(project_key, drain):
    auth = project_for_key(project_key.public_key)
    broken = _record(auth, "broken") | {"issue_id": "not-a-uuid"}
    _append([{b"r": orjson.dumps(broken)}])
    drain()
    letter = IngestDeadLetter.objects.get()
    assert consumer.dead_letter_store_again(dead_letter=letter) is False  # the cause is still there
    fixed = broken | {"issue_id": str(issue_id_for(project_id=auth.project_id, fingerprint=broken["fingerprint"]))}
    IngestDeadLetter.objects.filter(id=letter.id).update(raw=orjson.dumps(fixed))
    letter.refresh_from_db()
    assert consumer.dead_letter_store_again(dead_letter=letter) is True
    assert consumer.dead_letter_store_again(dead_letter=letter) is True
    assert Occurrence.objects.filter(event_id=broken["event_id"]).count() == 1
    assert Issue.objects.get().occurrence_count == 1
    letter.refresh_from_db()
    assert letter.stored_at is not None


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Point the connection settings (shared by every thread) at a database that is not there."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = str(free_port())
    else:
        connection.settings_dict["NAME"] = "/nonexistent/kaizen/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _consume(*, stop: threading.Event, into: dict) -> None:
    """The consumer loop in a thread, which closes the connection the thread opened."""
    try:
        into["stats"] = consumer.drain(stop=stop, consumer="c", block_ms=100)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_blames_no_entry(project_key):
    auth = project_for_key(project_key.public_key)
    _append([{b"r": orjson.dumps(_record(auth, f"r{i}"))} for i in range(30)])
    stop = threading.Event()
    with database_unreachable():
        consumer = threading.Thread(target=_consume, kwargs={"stop": stop, "into": {}})
        consumer.start()
        time.sleep(2.0)  # several failed attempts, with backoff
        assert _backlog() == (30, 30)  # read, pending, not acknowledged
    deadline = time.monotonic() + 20
    while Occurrence.objects.count() < 30 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    consumer.join(10)
    assert Occurrence.objects.count() == 30
    assert not IngestDeadLetter.objects.exists()
    assert _backlog() == (0, 0)


# --- Redis outages ----------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server of the test's own, without persistence: a restart loses every key."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed program, our arguments
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],  # fmt: skip
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no shutdown save: what a crash leaves
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis(settings, tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    settings.KAIZEN_INGEST_MODE = "stream"
    accept.local_quota_forget()
    try:
        yield server
    finally:
        server.stop()


def _post(client, project_key, message: str):
    return client.post("/api/v1/issues", data=orjson.dumps({"message": message}), content_type="application/json",
                       HTTP_X_KAIZEN_KEY=project_key.public_key)  # fmt: skip


def test_ingest_writes_to_the_database_while_redis_is_down(client, project_key, own_redis):
    answers = [_post(client, project_key, f"before {i}") for i in range(3)]
    assert [a.json()["stage"] for a in answers] == ["received"] * 3
    own_redis.stop()

    during = [_post(client, project_key, f"during {i}") for i in range(3)]
    assert [a.status_code for a in during] == [202] * 3
    assert [a.json()["stage"] for a in during] == ["detected"] * 3
    stored = set(Occurrence.objects.values_list("message", flat=True))
    assert stored == {f"during {i}" for i in range(3)}  # durable before the answer, without Redis

    own_redis.start()  # an empty Redis: the stream and its group are gone
    after = [_post(client, project_key, f"after {i}") for i in range(2)]
    assert [a.json()["stage"] for a in after] == ["received"] * 2  # the cached client reconnected
    stats = consumer.drain(stop=threading.Event(), until_empty=True)
    assert stats.stored == 2
    assert set(Occurrence.objects.values_list("message", flat=True)) == stored | {"after 0", "after 1"}


def test_quota_holds_while_redis_is_down(client, project_key, own_redis):
    project_key.project.rate_limit_per_minute = 2
    project_key.project.save()
    own_redis.stop()
    answers = [_post(client, project_key, f"r{i}").status_code for i in range(3)]
    assert answers == [202, 202, 429]
    assert Occurrence.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_503_only_when_the_database_is_down_too(client, project_key, own_redis, settings):
    settings.KAIZEN_KEY_CACHE_SECONDS = 60  # the key was looked up before the outage
    assert _post(client, project_key, "warm").status_code == 202
    with database_unreachable():
        assert _post(client, project_key, "redis still up").json()["stage"] == "received"
        own_redis.stop()
        response = _post(client, project_key, "nowhere to go")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "unavailable"
    assert int(response["Retry-After"]) > 0
    assert not Occurrence.objects.filter(message="nowhere to go").exists()


@pytest.mark.django_db(transaction=True)  # the consumer thread must see the project
def test_consumer_rides_out_a_redis_restart_that_lost_its_group(client, project_key, own_redis):
    stop = threading.Event()
    result = {}
    consumer = threading.Thread(target=_consume, kwargs={"stop": stop, "into": result}, daemon=True)
    consumer.start()
    try:
        for i in range(5):
            _post(client, project_key, f"first {i}")
        _wait_stored(5)
        own_redis.stop()
        time.sleep(1.5)
        assert consumer.is_alive()
        own_redis.start()
        for i in range(5):
            assert _post(client, project_key, f"second {i}").json()["stage"] == "received"
        _wait_stored(10)
    finally:
        stop.set()
        consumer.join(10)
    assert not consumer.is_alive()
    assert result["stats"].redis_errors > 0
    assert result["stats"].stored == 10


def _wait_stored(n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while Occurrence.objects.count() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Occurrence.objects.count() == n


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_consumer_command_never_exits_on_a_redis_outage(project_key, own_redis):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings", "DATABASE_URL": database_url(),
           "REDIS_URL": own_redis.url, "KAIZEN_INGEST_MODE": "stream"}  # fmt: skip
    consumer = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "ingest_consumer", "--name", "survivor"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        auth = project_for_key(project_key.public_key)
        _append([{b"r": orjson.dumps(_record(auth, "first"))}])
        _wait_stored(1)
        own_redis.stop()
        time.sleep(3)
        assert consumer.poll() is None, "the consumer exited while Redis was down"
        own_redis.start()  # empty: NOGROUP until the consumer recreates its group
        redis_client.get().client.xadd(settings.KAIZEN_INGEST_STREAM, {b"r": orjson.dumps(_record(auth, "second"))})
        _wait_stored(2)
        assert consumer.poll() is None
    finally:
        consumer.terminate()
        consumer.wait(10)
    assert set(Occurrence.objects.values_list("message", flat=True)) == {"first", "second"}


def test_dead_letters_in_the_console(admin_client, project_key, drain):
    auth = project_for_key(project_key.public_key)
    broken = _record(auth, "broken") | {"issue_id": "not-a-uuid"}
    _append([{b"r": orjson.dumps(broken)}])
    drain()
    letter = IngestDeadLetter.objects.get()
    listing = admin_client.get("/admin/healing/ingestdeadletter/")
    assert listing.status_code == 200
    assert "ValueError" in listing.content.decode()
    page = admin_client.get(f"/admin/healing/ingestdeadletter/{letter.id}/change/").content.decode()
    assert "not-a-uuid" in page  # the record as received
    fixed = broken | {"issue_id": str(issue_id_for(project_id=auth.project_id, fingerprint=broken["fingerprint"]))}
    IngestDeadLetter.objects.filter(id=letter.id).update(raw=orjson.dumps(fixed))
    admin_client.post("/admin/healing/ingestdeadletter/", {"action": "store_again", "_selected_action": [letter.id]})
    letter.refresh_from_db()
    assert letter.stored_at is not None
    assert Occurrence.objects.filter(event_id=broken["event_id"]).exists()
    assert AuditEntry.objects.filter(action="ingest.dead_letter_stored", target=f"dead letter {letter.id}").exists()
