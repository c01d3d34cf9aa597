"""Celery reads its settings from the CELERY_* block of Django's settings, resolved once at start
(kaizen_site.celery): each one is found where Celery looks first, with Django's value or Celery's
default, without going through Django's settings object on every read."""

import pytest
from celery.app.defaults import DEFAULTS
from celery.utils.collections import DictAttribute
from django.conf import settings

from kaizen_site.celery import app, worker_group

PREFIX = "CELERY_"


def test_every_setting_has_djangos_value_or_celerys_default():
    ours = {
        name.removeprefix(PREFIX).lower(): getattr(settings, name) for name in dir(settings) if name.startswith(PREFIX)
    }
    assert len(ours.keys() & DEFAULTS.keys()) > 10  # the routes, queues, acks, time limits...
    for key in DEFAULTS:
        assert app.conf[key] == ours.get(key, DEFAULTS[key]), key


def test_reading_a_setting_does_not_go_through_djangos_settings(monkeypatch):
    through_django = []
    read = DictAttribute.__getitem__
    monkeypatch.setattr(DictAttribute, "__getitem__", lambda self, key: through_django.append(key) or read(self, key))
    for key in ("task_always_eager", "task_send_sent_event", "broker_pool_acquire_timeout", "task_routes"):
        app.conf[key]  # noqa: B018 - what publishing a task reads
    assert through_django == []


def test_a_value_changed_on_the_app_still_wins():
    before = app.conf.task_default_queue
    app.conf.task_default_queue = "elsewhere"
    try:
        assert app.conf.task_default_queue == "elsewhere"
    finally:
        app.conf.task_default_queue = before


@pytest.mark.parametrize(
    ("hostname", "group"),
    [
        ("critical.4242@web-1", "critical"),  # a group of several processes: named for its group and pid
        ("urgent@web-1", "urgent"),
        ("routine@host.example.com", "routine"),  # the host may hold dots
    ],
)
def test_a_worker_is_known_by_its_group(hostname, group):
    assert worker_group(hostname) == group
