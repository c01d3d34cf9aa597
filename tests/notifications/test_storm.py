"""Alert storms: past KAIZEN_NOTIFY_STORM_PAGES sends on a channel within the window, alerts are
held and go out as one summary a minute, on every path a send can take (the routing table, the P0
fallback); routings in parallel count each other, and without a count the alert goes out."""

import threading
from datetime import timedelta

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from notifications import tasks
from notifications.deliveries import notification_route
from notifications.models import Delivery, Notification
from notifications.owner_alert import owner_alert
from notifications.summaries import storm_release

pytestmark = pytest.mark.django_db


def page(n: int, severity: str = "P0") -> Notification:
    return owner_alert(kind="issue_detected", severity=severity, target=f"issue:{n}", title=f"Checkout fails {n}",
                       dedupe_key=f"issue:{n}")  # fmt: skip


def statuses(notification: Notification) -> dict[str, tuple[str, str]]:
    return {d.channel: (d.status, d.hold) for d in Delivery.objects.filter(notification=notification)}


def test_past_the_limit_alerts_are_held_and_go_out_as_one_summary_per_channel(
    channels, settings, django_capture_on_commit_callbacks, published
):
    settings.KAIZEN_NOTIFY_STORM_PAGES = 3
    alerts = [page(n) for n in range(5)]
    for alert in alerts:
        notification_route(notification_id=alert.pk)

    queued, held = ("queued", ""), ("held", "storm")
    assert [statuses(a)["sms"] for a in alerts] == [queued] * 3 + [held] * 2
    assert set(statuses(alerts[4]).values()) == {held}  # every channel of the page filled up alike

    with django_capture_on_commit_callbacks(execute=True):
        summaries = storm_release()
    assert sorted(s.deliveries.get().channel for s in summaries) == ["discord", "push", "slack", "sms"]
    sms_summary = next(s for s in summaries if s.deliveries.get().channel == "sms")
    assert sms_summary.title == "2 more in an alert storm" and sms_summary.severity == "P0"
    assert sms_summary.body == "[P0] Checkout fails 3\n[P0] Checkout fails 4"
    assert sms_summary.deliveries.get().status == "queued"
    assert list(Delivery.objects.filter(notification__in=alerts[3:], channel="sms").values_list("status", "summary")) == [
        ("summarised", sms_summary.pk)
    ] * 2  # fmt: skip
    sends = {args[0] for name, args, _ in published("P0") if name == "notifications.tasks.delivery_send"}
    assert {s.deliveries.get().pk for s in summaries} <= sends  # a P0 summary goes on the P0 queue
    assert storm_release() == []  # each held alert is summarised once

    # The storm is over once the window has passed: the next page goes out on its own.
    later = page(9)
    notification_route(notification_id=later.pk, now=timezone.now() + timedelta(minutes=11))
    assert statuses(later)["sms"] == queued


def test_the_guard_turned_off_holds_nothing(channels, settings):
    settings.KAIZEN_NOTIFY_STORM_PAGES = 0
    alerts = [page(n, severity="P1") for n in range(8)]
    for alert in alerts:
        notification_route(notification_id=alert.pk)
    assert not Delivery.objects.filter(status="held").exists()
    tasks.storm_release()
    assert not Notification.objects.filter(kind="summary").exists()


def test_when_the_count_cannot_be_taken_the_alert_goes_out(channels, settings, monkeypatch):
    settings.KAIZEN_NOTIFY_STORM_PAGES = 1

    def redis_down(*args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(cache, "incr", redis_down)
    alerts = [page(n) for n in range(3)]
    for alert in alerts:
        notification_route(notification_id=alert.pk)
    assert [statuses(a)["sms"] for a in alerts] == [("queued", "")] * 3


def test_a_p0_falling_back_to_a_crowded_channel_waits_for_the_summary_there(no_channels, settings):
    settings.KAIZEN_OWNER_EMAILS = ["owner@example.com"]  # only email: every P0 falls back to it
    settings.KAIZEN_NOTIFY_STORM_PAGES = 2
    alerts = [page(n) for n in range(3)]
    for alert in alerts:
        notification_route(notification_id=alert.pk)

    assert [statuses(a)["email"] for a in alerts] == [("queued", "")] * 2 + [("held", "storm")]
    [summary] = storm_release()
    assert summary.deliveries.get().channel == "email" and summary.title == "1 more in an alert storm"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent transactions")
def test_routings_in_parallel_threads_count_each_other(channels, settings):
    """As when fifty issues turn P0 in one batch and the P0 workers route their alerts at once: none
    waits for another, and still only the allowance goes out."""
    settings.KAIZEN_NOTIFY_STORM_PAGES = 3
    alerts = [page(n) for n in range(8)]
    barrier = threading.Barrier(len(alerts))

    def route(alert: Notification) -> None:
        try:
            barrier.wait()
            notification_route(notification_id=alert.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=route, args=(alert,)) for alert in alerts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sms = Delivery.objects.filter(channel="sms")
    assert sms.count() == 8
    assert sms.filter(status="queued").count() == 3 and sms.filter(status="held", hold="storm").count() == 5
