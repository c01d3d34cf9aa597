"""The seam and the routing table: which channels each severity reaches, what preferences and
unconfigured channels do, where the work is published, and de-duplication."""

from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from healing.models import AuditEntry
from notifications import tasks
from notifications.deliveries import notification_route
from notifications.models import Delivery, Notification, Preference
from notifications.owner_alert import owner_alert

from .conftest import BEAMS_USERS_URL

pytestmark = pytest.mark.django_db


def alert(severity: str, *, kind: str = "issue_detected", key: str = "") -> Notification:
    return owner_alert(kind=kind, severity=severity, target="issue:9", title="Checkout fails", dedupe_key=key)


def plan(notification: Notification) -> dict[str, tuple[str, str]]:
    return {d.channel: (d.status, d.hold) for d in Delivery.objects.filter(notification=notification)}


def test_the_seam_records_audits_and_routes_on_commit_on_the_severity_queue(
    channels, django_capture_on_commit_callbacks, published
):
    with django_capture_on_commit_callbacks(execute=True):
        page = owner_alert(kind="auto_fix_failed", severity="P0", target="issue:9", title="Fix failed",
                           body="Rolled back.", dedupe_key="issue:9", detail={"stage": "aborted"})  # fmt: skip
        minor = owner_alert(kind="issue_detected", severity="P3", target="issue:10", title="Typo in footer")

    entry = AuditEntry.objects.get(action="owner.alert", target="issue:9")
    assert entry.detail == {"stage": "aborted", "event": "auto_fix_failed", "severity": "P0", "title": "Fix failed",
                            "notification": page.pk}  # fmt: skip
    assert [(name, args) for name, args, _ in published("P0")] == [
        ("notifications.tasks.notification_route", [page.pk])
    ]
    assert published("notify") == []  # a P1 storm's alerts wait there, never in front of a page
    assert [(name, args) for name, args, _ in published("P3")] == [
        ("notifications.tasks.notification_route", [minor.pk])
    ]


def test_nothing_is_published_when_the_callers_transaction_rolls_back(
    channels, django_capture_on_commit_callbacks, published
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        alert("P0")
    assert len(callbacks) == 1 and published("P0") == []  # only run by a commit


def test_an_alert_is_never_recorded_without_its_audit_entry(
    channels, monkeypatch, django_capture_on_commit_callbacks, published
):
    from notifications import owner_alert as seam

    def audit_fails(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(seam, "audit_record", audit_fails)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        alert("P0")
    assert not Notification.objects.exists() and published("P0") == []


@pytest.mark.parametrize("bad", [{"kind": "nope"}, {"severity": "P9"}, {"kind": "summary"}])
def test_the_seam_refuses_unknown_kinds_and_severities(channels, bad):
    with pytest.raises(ValueError):
        owner_alert(**{"kind": "issue_detected", "severity": "P1", "target": "t", "title": "x", **bad})
    assert not Notification.objects.exists()


def test_routing_table_by_severity(channels, django_capture_on_commit_callbacks, published):
    notifications = {severity: alert(severity) for severity in ("P0", "P1", "P2", "P3")}
    with django_capture_on_commit_callbacks(execute=True):
        for notification in notifications.values():
            notification_route(notification_id=notification.pk)

    queued, held = ("queued", ""), ("held", "batch")
    assert plan(notifications["P0"]) == {"push": queued, "sms": queued, "slack": queued, "discord": queued}
    assert plan(notifications["P1"]) == {"push": queued, "slack": queued, "discord": queued}
    assert plan(notifications["P2"]) == {"push": held}
    assert plan(notifications["P3"]) == {"email": ("held", "digest")}
    # The pages themselves are sent by the routing task (no second hop); every other send is
    # published, on the queue of its alert's severity.
    for queue, severity in (("P0", "P0"), ("notify", "P1")):
        sends = [args[0] for name, args, _ in published(queue) if name == "notifications.tasks.delivery_send"]
        urgent = Delivery.objects.filter(status="queued", notification__severity=severity)
        assert sends and sorted(sends) == sorted(urgent.exclude(channel="push").values_list("pk", flat=True))


def test_routing_twice_creates_nothing_more(channels):
    notification = alert("P1")
    notification_route(notification_id=notification.pk)
    assert notification_route(notification_id=notification.pk) == []
    assert Delivery.objects.filter(notification=notification).count() == 3


def test_preferences_turn_a_channel_off_per_event_type(channels):
    Preference.objects.create(kind="issue_detected", channel="slack", enabled=False)
    detected, failed = alert("P1"), alert("P1", kind="auto_fix_failed")
    notification_route(notification_id=detected.pk)
    notification_route(notification_id=failed.pk)

    assert plan(detected)["slack"] == ("suppressed", "")
    assert Delivery.objects.get(notification=detected, channel="slack").error == "turned off in the owner's preferences"
    assert plan(failed)["slack"] == ("queued", "")


def test_unconfigured_channels_are_recorded_and_a_p0_still_reaches_the_owner_by_email(no_channels, settings):
    settings.KAIZEN_OWNER_EMAILS = ["owner@example.com"]
    notification = alert("P0")
    notification_route(notification_id=notification.pk)

    deliveries = {d.channel: d for d in Delivery.objects.filter(notification=notification)}
    assert {c: (d.status, d.error) for c, d in deliveries.items() if c != "email"} == {
        c: ("suppressed", "not configured") for c in ("push", "sms", "slack", "discord")
    }
    assert deliveries["email"].status == "queued" and deliveries["email"].fallback_from == deliveries["push"]


def test_the_same_issue_pages_once_within_the_window_unless_more_severe(channels, settings):
    first = alert("P1", key="issue:9")
    notification_route(notification_id=first.pk)
    again, worse = alert("P1", key="issue:9"), alert("P0", key="issue:9")
    notification_route(notification_id=again.pk)
    notification_route(notification_id=worse.pk)

    again.refresh_from_db()
    worse.refresh_from_db()
    assert again.duplicate_of == first and set(plan(again).values()) == {("suppressed", "")}
    assert "duplicate of notification" in Delivery.objects.filter(notification=again).first().error
    assert worse.duplicate_of is None and plan(worse)["sms"] == ("queued", "")

    later = alert("P1", key="issue:9")
    notification_route(
        notification_id=later.pk, now=timezone.now() + timedelta(minutes=settings.KAIZEN_NOTIFY_DEDUPE_MINUTES + 1)
    )
    later.refresh_from_db()
    assert later.duplicate_of is None and plan(later)["push"] == ("queued", "")


@responses.activate
def test_the_routing_task_sends_the_page_itself_and_publishes_the_rest(
    channels, device, django_capture_on_commit_callbacks, published
):
    responses.post(BEAMS_USERS_URL, json={"publishId": "pub-1"})
    notification = alert("P0")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.notification_route(notification.pk)

    assert plan(notification)["push"] == ("sent", "") and len(responses.calls) == 1
    published_ids = {args[0] for _, args, _ in published("P0")}
    assert published_ids == set(
        Delivery.objects.filter(notification=notification).exclude(channel="push").values_list("pk", flat=True)
    )
