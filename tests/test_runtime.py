"""Which backing services a process runs on, decided at start (kaizen_site.runtime.detect): `auto`
follows whether Redis answers, and a deployment set to `stream` starts during a Redis outage
instead of refusing to (a process restarted then would otherwise stop the whole service)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from kaizen_site import runtime
from tests.processes import free_port

ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def down() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


def test_auto_takes_redis_when_it_answers_and_the_embedded_defaults_when_not(down):
    assert runtime.detect(redis_url=settings.REDIS_URL, broker_url="", ingest_mode="auto") == runtime.Runtime(
        redis_url=settings.REDIS_URL, broker_url=settings.REDIS_URL, ingest_mode="stream"
    )
    assert runtime.detect(redis_url=down, broker_url="", ingest_mode="auto") == runtime.Runtime(
        redis_url="", broker_url="filesystem://", ingest_mode="direct"
    )
    assert runtime.detect(redis_url=settings.REDIS_URL, broker_url="", ingest_mode="direct").ingest_mode == "direct"


def test_stream_mode_starts_while_its_redis_is_down_and_says_so(down, caplog):
    with caplog.at_level(logging.WARNING, logger="kaizen.runtime"):
        found = runtime.detect(redis_url=down, broker_url="", ingest_mode="stream")

    assert found == runtime.Runtime(redis_url=down, broker_url=down, ingest_mode="stream")
    assert "is not reachable yet; waiting for it (KAIZEN_INGEST_MODE=stream)" in caplog.text
    amqp = "amqp://guest@127.0.0.1:5672//"
    assert runtime.detect(redis_url=down, broker_url=amqp, ingest_mode="stream").broker_url == amqp


@pytest.mark.parametrize("redis_url", ["", "memcached://127.0.0.1:11211"])
def test_stream_mode_without_a_redis_url_is_refused(redis_url):
    with pytest.raises(RuntimeError, match=r"KAIZEN_INGEST_MODE=stream needs REDIS_URL"):
        runtime.detect(redis_url=redis_url, broker_url="", ingest_mode="stream")


def test_a_process_started_during_an_outage_loads_its_settings(down):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "DJANGO_", "CELERY_"))}
    env.update(DJANGO_SETTINGS_MODULE="kaizen_site.settings", DEBUG="1", REDIS_URL=down, KAIZEN_INGEST_MODE="stream")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.KAIZEN_INGEST_MODE, s.REDIS_URL, s.CELERY_BROKER_URL)"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our own settings
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["stream", down, down]
