"""/metrics: a bearer token (Prometheus' `authorization` scrape setting) or an address allowlist;
open only when neither is configured and DEBUG is on."""

import pytest
from django.core.checks import run_checks
from django.test import Client

pytestmark = pytest.mark.django_db


def _ids() -> set[str]:
    return {m.id for m in run_checks() if (m.id or "").startswith("kaizen.I20")}


def test_the_token_lets_the_scraper_in(settings):
    settings.KAIZEN_METRICS_TOKEN = "s3cret"
    client = Client()
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert set(refused.json()) == {"error", "detail"}
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert answer.status_code == 200 and b"kaizen_queue_depth" in answer.content
    assert not _ids()


def test_the_allowlist_lets_listed_addresses_in(settings):
    settings.KAIZEN_METRICS_IP_ALLOWLIST = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.9.8.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 401


def test_token_or_allowlist_either_admits(settings):
    settings.KAIZEN_METRICS_TOKEN, settings.KAIZEN_METRICS_IP_ALLOWLIST = "s3cret", ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.9.8.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 401


def test_unconfigured_metrics_are_open_only_in_debug(settings):
    settings.KAIZEN_METRICS_TOKEN, settings.KAIZEN_METRICS_IP_ALLOWLIST = "", []
    settings.DEBUG = True
    assert Client().get("/metrics").status_code == 200
    assert _ids() == {"kaizen.I201"}
    settings.DEBUG = False
    assert Client().get("/metrics").status_code == 401
    assert _ids() == {"kaizen.I202"}
