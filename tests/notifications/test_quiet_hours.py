"""Quiet hours in the owner's timezone (across a DST change), held not dropped, released as one summary;
the P2 batch."""

from datetime import UTC, datetime, time

import pytest
from freezegun import freeze_time

from notifications.deliveries import notification_route
from notifications.models import Delivery, Notification, QuietHours
from notifications.routing import quiet_now
from notifications.summaries import p2_batch_send, quiet_hours_release

pytestmark = pytest.mark.django_db


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def quiet(channels):
    return QuietHours.objects.create(enabled=True, start=time(22), end=time(7))


@pytest.mark.parametrize(
    ("zone", "moment", "expected"),
    [
        ("Europe/Paris", utc(2026, 1, 15, 21, 30), True),  # 22:30 in Paris (UTC+1)
        ("Europe/Paris", utc(2026, 1, 15, 20, 30), False),  # 21:30
        ("Europe/Paris", utc(2026, 1, 16, 5, 59), True),  # 06:59
        ("Europe/Paris", utc(2026, 1, 16, 6, 0), False),  # 07:00: over
        ("America/Los_Angeles", utc(2026, 1, 16, 6, 30), True),  # 22:30 the evening before
        ("Asia/Kolkata", utc(2026, 1, 15, 16, 45), True),  # 22:15, a half-hour offset
        ("UTC", utc(2026, 1, 15, 12, 0), False),
    ],
)
def test_quiet_hours_are_read_on_the_owners_clock(settings, quiet, zone, moment, expected):
    settings.KAIZEN_OWNER_TIMEZONE = zone
    assert quiet_now(quiet=quiet, now=moment) is expected


def test_quiet_hours_follow_the_owner_across_the_dst_change(settings, quiet):
    """Paris springs forward on 29 March 2026: quiet hours end at 07:00 local, 06:00 UTC before, 05:00 after."""
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/Paris"
    assert quiet_now(quiet=quiet, now=utc(2026, 3, 28, 5, 30)) is True  # 06:30 CET
    assert quiet_now(quiet=quiet, now=utc(2026, 3, 29, 5, 30)) is False  # 07:30 CEST
    assert quiet_now(quiet=quiet, now=utc(2026, 3, 29, 4, 30)) is True  # 06:30 CEST
    assert quiet_now(quiet=quiet, now=utc(2026, 3, 28, 21, 0)) is True  # 22:00 CET


def test_a_disabled_or_empty_window_is_never_quiet(quiet):
    quiet.enabled = False
    assert quiet_now(quiet=quiet, now=utc(2026, 1, 15, 23)) is False
    quiet.enabled, quiet.end = True, time(22)
    assert quiet_now(quiet=quiet, now=utc(2026, 1, 15, 23)) is False


def route(severity: str, title: str) -> Notification:
    notification = Notification.objects.create(kind="issue_detected", severity=severity, title=title)
    notification_route(notification_id=notification.pk)
    return notification


def test_during_quiet_hours_p1_is_held_p0_breaks_through_and_the_summary_comes_when_they_end(settings, quiet, device):
    settings.KAIZEN_OWNER_TIMEZONE = "America/New_York"
    with freeze_time(utc(2026, 3, 8, 5, 0)):  # 00:00 EST, the night the US springs forward
        held_a, held_b = route("P1", "Slow search"), route("P1", "Checkout 500s")
        page = route("P0", "Site down")
        assert quiet_hours_release() == []  # still quiet: nothing goes out
    assert set(Delivery.objects.filter(notification__in=[held_a, held_b]).values_list("status", "hold")) == {
        ("held", "quiet")
    }
    assert set(Delivery.objects.filter(notification=page).values_list("status", flat=True)) == {"queued"}

    with freeze_time(utc(2026, 3, 8, 10, 59)):  # 06:59 EDT: still quiet, though UTC moved an hour less
        assert quiet_hours_release() == []
    with freeze_time(utc(2026, 3, 8, 11, 0)):  # 07:00 EDT
        summaries = quiet_hours_release()

    assert {s.title for s in summaries} == {"2 alerts during quiet hours"}
    assert sorted(s.deliveries.get().channel for s in summaries) == ["discord", "push", "slack"]
    push_summary = next(s for s in summaries if s.deliveries.get().channel == "push")
    assert push_summary.severity == "P1" and push_summary.deliveries.get().status == "queued"
    assert "[P1] Slow search" in push_summary.body and "[P1] Checkout 500s" in push_summary.body
    held = Delivery.objects.filter(notification__in=[held_a, held_b])
    assert set(held.values_list("status", flat=True)) == {"summarised"}  # carried, not dropped
    assert held.filter(channel="push").first().summary == push_summary
    with freeze_time(utc(2026, 3, 8, 11, 1)):
        assert quiet_hours_release() == []  # released once


def test_p0_is_held_too_when_the_owner_turned_the_break_through_off(quiet):
    quiet.p0_breaks_through = False
    quiet.save()
    with freeze_time(utc(2026, 1, 15, 23)):
        page = route("P0", "Site down")
    assert set(Delivery.objects.filter(notification=page).values_list("status", "hold")) == {("held", "quiet")}


def test_p2_alerts_go_out_as_one_batch_push_and_wait_through_quiet_hours(quiet):
    with freeze_time(utc(2026, 1, 15, 23)):
        for n in range(3):
            route("P2", f"Slow page {n}")
        assert p2_batch_send() is None  # quiet: the batch waits
    with freeze_time(utc(2026, 1, 16, 9)):
        summary = p2_batch_send()
        assert p2_batch_send() is None

    assert summary.title == "3 degraded-service alerts" and summary.severity == "P2"
    assert summary.deliveries.get().channel == "push"
    assert Delivery.objects.filter(summary=summary, status="summarised").count() == 3
