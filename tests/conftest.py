"""Shared fixtures: the real PostgreSQL (pytest-django) and Redis (database 15, flushed per test)."""

import base64
import fcntl
import importlib
import json
import threading
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client

from healing import projects
from healing.ingest import classify, consumer
from healing.loop import patterns
from healing.models import ClassificationRule, ErrorPattern, Issue, Occurrence
from kaizen_site.celery import app as celery_app
from tests.factories import ProjectKeyFactory
from tests.owner import owner_create, owner_listed, owner_verify


def pytest_configure(config):
    """Two suites on one machine would share the PostgreSQL test database and Redis database 15
    (each run recreates and flushes them), so runs take turns on a lock file."""
    lock_path = Path(settings.VAR_DIR) / "test-suite.lock"
    config._kaizen_lock = lock_path.open("w")
    fcntl.flock(config._kaizen_lock, fcntl.LOCK_EX)


@pytest.fixture(autouse=True)
def _clean_state():
    """Every test starts with an empty Redis database and no process-local caches."""
    if settings.REDIS_URL:
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    projects.forget_keys()
    classify.forget_rules()
    patterns.forget_patterns()
    yield
    projects.forget_keys()
    classify.forget_rules()
    patterns.forget_patterns()


@pytest.fixture(autouse=True)
def _default_rules(request):
    """Transactional tests end by flushing every table, including the classification rules and
    error patterns migrations seed; put them back for any test that touches the database."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names & {"db", "transactional_db", "live_server"}:
        return
    transactional = bool(names & {"transactional_db", "live_server"}) or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from django.apps import apps

    if not ClassificationRule.objects.exists():
        importlib.import_module("healing.migrations.0002_default_classification_rules").seed(apps, None)
    if not ErrorPattern.objects.exists():
        importlib.import_module("healing.migrations.0004_patterns_remediation").seed(apps, None)


@pytest.fixture
def admin_user(db, settings):
    """pytest-django's admin, as the console admits it: the owner's address, a TOTP device."""
    owner_listed(settings)
    return owner_create()


@pytest.fixture
def admin_client(admin_user):
    """Signed in as the owner, past the second factor."""
    return owner_verify(Client(), admin_user)


METRICS_TOKEN = "test-scrape-token"  # noqa: S105


@pytest.fixture
def scrape(settings):
    """GET /metrics as Prometheus does, with the bearer token (KAIZEN_METRICS_TOKEN); returns the text."""
    settings.KAIZEN_METRICS_TOKEN = METRICS_TOKEN
    scraper = Client()

    def get() -> str:
        response = scraper.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
        assert response.status_code == 200, response.content
        return response.content.decode()

    return get


@pytest.fixture
def project_key(db):
    return ProjectKeyFactory()


@pytest.fixture
def project(project_key):
    return project_key.project


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def post_report(client, project_key):
    """POST one native report with the project's key; returns the response."""

    def post(payload, *, key=None, **extra):
        import orjson

        return client.post(
            "/api/v1/issues",
            data=orjson.dumps(payload),
            content_type="application/json",
            HTTP_X_KAIZEN_KEY=key or project_key.public_key,
            **extra,
        )

    return post


@pytest.fixture
def drain():
    """Store everything waiting in the ingest stream (stream mode), as the consumer would."""

    def run(**kwargs):
        if settings.KAIZEN_INGEST_MODE != "stream":
            return None
        return consumer.drain(stop=threading.Event(), until_empty=True, **kwargs)

    return run


@pytest.fixture
def ingest_written(drain):
    """What ingest has written since the last call: entries appended to the stream (counted before
    they are drained), then the occurrences and issues in the database once drained."""

    def counts() -> dict[str, int]:
        queued = 0
        if settings.KAIZEN_INGEST_MODE == "stream":
            queued = redis.Redis.from_url(settings.REDIS_URL).xlen(settings.KAIZEN_INGEST_STREAM)
        drain()
        return {"queued": queued, "occurrences": Occurrence.objects.count(), "issues": Issue.objects.count()}

    return counts


@pytest.fixture
def direct_mode(settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    return settings


@pytest.fixture
def celery_eager():
    celery_app.conf.task_always_eager = True
    yield celery_app
    celery_app.conf.task_always_eager = False


@pytest.fixture
def broker():
    """The Redis broker Celery publishes to (kombu keeps each queue as a list named after it)."""
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def published(broker):
    """The tasks waiting on a queue of the real broker, oldest first, as (task name, args, eta)."""

    def read(queue: str) -> list[tuple[str, list, str | None]]:
        tasks = []
        for raw in reversed(broker.lrange(queue, 0, -1)):  # kombu LPUSHes: the oldest is last
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            tasks.append((message["headers"]["task"], args, message["headers"].get("eta")))
        return tasks

    return read
