"""The broker may be down: ingest still answers 202 and the work is enqueued once it is back."""

from datetime import timedelta

import kombu.pools
import pytest

from healing.ingest import outbox
from healing.models import EnqueueState, Issue
from kaizen_site.celery import app as celery_app

SILENT = {"type": "SILENT_FAILURE", "message": "Generate did nothing"}


def _reset_broker_pools():
    # Celery and kombu cache connections and producers per broker; drop them all. Dropped, not
    # closed: closing a pooled channel that an earlier test left mid-poll (a control ping waits
    # for replies on one) blocks reading a reply that never comes.
    kombu.pools.connections.clear()
    kombu.pools.producers.clear()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down():
    """Point Celery at a closed port, as if the broker machine were gone."""
    good = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"
    _reset_broker_pools()
    yield good
    celery_app.conf.broker_url = good
    _reset_broker_pools()


def _broker_back(good_url):
    celery_app.conf.broker_url = good_url
    _reset_broker_pools()


@pytest.mark.parametrize("mode", ["stream", pytest.param("direct", marks=pytest.mark.django_db(transaction=True))])
def test_reports_are_accepted_while_the_broker_is_down_and_enqueued_after(
    mode, settings, broker_down, post_report, drain, broker
):
    settings.KAIZEN_INGEST_MODE = mode
    response = post_report(SILENT)
    assert response.status_code == 202
    drain()
    issue = Issue.objects.get()
    assert (issue.enqueue_state, issue.enqueue_attempts) == (EnqueueState.PENDING, 1)
    assert broker.llen("P1") == 0

    # Not yet due: the grace period protects a publish that is merely slow.
    assert outbox.reenqueue_pending() == 0
    _broker_back(broker_down)
    assert outbox.reenqueue_pending(older_than=timedelta(0)) == 1
    issue.refresh_from_db()
    assert issue.enqueue_state == EnqueueState.SENT
    assert broker.llen("P1") == 1
    assert outbox.reenqueue_pending(older_than=timedelta(0)) == 0  # nothing is sent twice


def test_the_periodic_task_runs_the_reenqueue(db, post_report, drain, broker, celery_eager):
    from healing.tasks import reenqueue_pending

    post_report(SILENT)
    drain()
    Issue.objects.update(
        enqueue_state=EnqueueState.PENDING, enqueued_at=Issue.objects.get().first_seen - timedelta(minutes=5)
    )
    broker.delete("P1")
    assert reenqueue_pending.delay().get() == 1
