"""The API served as it ships: the Procfile's `web:` command line, run as a process of its own.

Django's test server (live_server) reads request bodies with the standard library's file objects;
the server in the Procfile hands the application its own `wsgi.input`. Tests that send bodies
through a real server use this one, so they exercise what production runs.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.processes import database_url, free_port, processes_stop, procfile_start, wait_answering

BIN = Path(sys.executable).parent


METRICS_TOKEN = "served-metrics-token"  # noqa: S105 - a test server's


@contextmanager
def web_served(tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """The Procfile's web process (one worker) on the test database and this run's Redis, in the
    test settings' ingest mode, with `extra_env` on top; yields its base URL, stops it after."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "KAIZEN_INGEST_MODE": settings.KAIZEN_INGEST_MODE,
        "KAIZEN_INGEST_STREAM": settings.KAIZEN_INGEST_STREAM,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "KAIZEN_METRICS_TOKEN": METRICS_TOKEN,  # /metrics is scraped as Prometheus would
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # as `make run` hands honcho the virtualenv
        **extra_env,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one worker: /metrics reads its own counters
    log_path = tmp_path / "web.log"
    server = procfile_start("web", env=env, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{base}/healthz", proc=server, log_path=log_path)
        yield base
    finally:
        processes_stop([server])


@pytest.fixture
def served(transactional_db, tmp_path):
    """The base URL of web_served(): what it accepts, the test can drain() and read."""
    with web_served(tmp_path) as base:
        yield base


def served_counter(base: str, *, name: str, labels: dict[str, str]) -> float:
    """A counter's value as the served process's /metrics reports it (0 until it is first counted)."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(f"{base}/metrics", timeout=10, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    answer.raise_for_status()
    text = answer.text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
