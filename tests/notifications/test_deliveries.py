"""Delivery: the claim, retries with backoff and Retry-After, permanent failures, the P0 fallback chain,
and the sweep that re-publishes sends whose task was lost."""

from datetime import datetime, timedelta

import pytest
import responses
from django.core import mail
from django.utils import timezone

from notifications.deliveries import deliveries_resend_stuck, delivery_attempt, notification_route, retry_delay
from notifications.models import Delivery, Notification

from .conftest import BEAMS_USERS_URL, TWILIO_MESSAGES_URL

pytestmark = pytest.mark.django_db


def routed(severity: str, **fields) -> Notification:
    notification = Notification.objects.create(kind="auto_fix_failed", severity=severity, target="issue:3",
                                               title="Rollback of KZ-12", **fields)  # fmt: skip
    notification_route(notification_id=notification.pk)
    return notification


def by_channel(notification: Notification) -> dict[str, Delivery]:
    return {d.channel: d for d in Delivery.objects.filter(notification=notification).order_by("id")}


def test_backoff_doubles_and_never_undercuts_retry_after(settings):
    settings.KAIZEN_NOTIFY_BACKOFF_SECONDS = 5
    assert [retry_delay(attempts=n, retry_after=None) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(attempts=1, retry_after=60) == 60
    assert retry_delay(attempts=1, retry_after=10_000) == 900  # capped below the broker's visibility timeout


@responses.activate
def test_a_transient_failure_is_retried_later_on_the_same_queue_then_succeeds(
    channels, device, django_capture_on_commit_callbacks, published
):
    responses.post(BEAMS_USERS_URL, status=503, json={"error": "unavailable", "description": "down"})
    notification = routed("P1")
    push = by_channel(notification)["push"]
    started = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        attempt = delivery_attempt(delivery_id=push.pk, now=started)

    assert (attempt.status, attempt.retry_in) == ("queued", 5.0)
    ((name, args, eta),) = published("notify")
    assert (name, args) == ("notifications.tasks.delivery_send", [push.pk])
    assert datetime.fromisoformat(eta) >= started + timedelta(seconds=4)
    push.refresh_from_db()
    assert (push.status, push.attempts) == ("queued", 1) and "server error" in push.error

    responses.replace(responses.POST, BEAMS_USERS_URL, json={"publishId": "pub-2"})
    assert delivery_attempt(delivery_id=push.pk).status == "sent"
    push.refresh_from_db()
    assert (push.status, push.attempts, push.provider_id, push.error) == ("sent", 2, "pub-2", "")


@responses.activate
def test_transient_failures_stop_after_the_last_attempt(channels, settings):
    settings.KAIZEN_NOTIFY_MAX_ATTEMPTS = 3
    responses.post(TWILIO_MESSAGES_URL, status=500, json={"code": 20500, "message": "Internal error", "status": 500})
    notification = routed("P1")
    delivery = Delivery.objects.create(notification=notification, channel="sms")

    statuses = [delivery_attempt(delivery_id=delivery.pk).status for _ in range(3)]

    assert statuses == ["queued", "queued", "failed"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3) and len(responses.calls) == 3


def test_a_claimed_or_finished_delivery_is_not_sent_twice(channels):
    notification = routed("P3")
    delivery = Delivery.objects.create(notification=notification, channel="email")
    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"
    assert delivery_attempt(delivery_id=delivery.pk).status == ""  # a redelivered task
    assert len(mail.outbox) == 1 and Delivery.objects.get(pk=delivery.pk).attempts == 1


@responses.activate
def test_p0_push_failing_for_good_falls_back_to_sms_then_email(channels, device):
    responses.post(BEAMS_USERS_URL, status=401, json={"error": "unauthorized", "description": "bad secret"})
    responses.post(TWILIO_MESSAGES_URL, status=400, json={"code": 21211, "message": "Invalid 'To'", "status": 400})
    notification = routed("P0")
    first = by_channel(notification)

    assert delivery_attempt(delivery_id=first["push"].pk).status == "failed"
    assert set(by_channel(notification)) == set(first)  # SMS is already on its way: nothing added yet
    assert delivery_attempt(delivery_id=first["sms"].pk).status == "failed"

    email = by_channel(notification)["email"]
    assert (email.status, email.fallback_from_id) == ("queued", first["sms"].pk)
    assert delivery_attempt(delivery_id=email.pk).status == "sent"
    assert mail.outbox[0].subject == "[Kaizen P0] Auto-fix failed — you are needed: Rollback of KZ-12"


@responses.activate
def test_p0_push_failing_with_sms_off_falls_back_to_email(channels, device, settings):
    settings.KAIZEN_TWILIO_ACCOUNT_SID = ""
    responses.post(BEAMS_USERS_URL, status=400, json={"error": "bad", "description": "invalid body"})
    notification = routed("P0")

    delivery_attempt(delivery_id=by_channel(notification)["push"].pk)

    deliveries = by_channel(notification)
    assert (deliveries["sms"].status, deliveries["sms"].error) == ("suppressed", "not configured")
    assert deliveries["email"].status == "queued"


@responses.activate
def test_a_p1_permanent_failure_has_no_fallback(channels, device):
    responses.post(BEAMS_USERS_URL, status=401, json={"error": "unauthorized", "description": "x"})
    responses.post(channels.KAIZEN_SLACK_WEBHOOK_URL, body="ok")
    notification = routed("P1")
    delivery_attempt(delivery_id=by_channel(notification)["push"].pk)
    assert set(by_channel(notification)) == {"push", "slack", "discord"}


def test_the_sweep_republishes_lost_sends_and_routings(channels, django_capture_on_commit_callbacks, published):
    now = timezone.now()
    notification = routed("P1")
    stale = by_channel(notification)["slack"]
    Delivery.objects.filter(pk=stale.pk).update(next_attempt_at=now - timedelta(minutes=5))
    lost = Notification.objects.create(
        kind="issue_detected", severity="P2", title="Lost", created_at=now - timedelta(minutes=5)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_resend_stuck(now=now) == 2

    assert [(n, a) for n, a, _ in published("notify")] == [("notifications.tasks.delivery_send", [stale.pk])]
    assert [(n, a) for n, a, _ in published("P3")] == [("notifications.tasks.notification_route", [lost.pk])]
    assert Delivery.objects.get(pk=stale.pk).next_attempt_at == now
