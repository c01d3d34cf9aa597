"""The daily email digest: once per local day at the owner's hour, with every section and the held P3 alerts."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from freezegun import freeze_time

from healing.models import ErrorPattern
from notifications.deliveries import delivery_attempt, notification_route
from notifications.digest import daily_digest_send
from notifications.models import Delivery, Digest, Notification
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db


def test_digest_content_and_once_per_day(channels, settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Asia/Tokyo"
    settings.KAIZEN_NOTIFY_DIGEST_HOUR = 8
    now = datetime(2026, 6, 2, 0, 5, tzinfo=UTC)  # 09:05 in Tokyo
    with freeze_time(now - timedelta(hours=3)):
        minor = Notification.objects.create(kind="issue_detected", severity="P3", title="Typo on pricing page")
        notification_route(notification_id=minor.pk)
        Notification.objects.create(
            kind="enhancement_ready", severity="P2", title="10 proposals ready", body="Top: dark mode"
        )
    IssueFactory(title="Cart total wrong", stage="resolved", resolved_at=now - timedelta(hours=2), severity="P1")
    IssueFactory(title="Old fix", stage="resolved", resolved_at=now - timedelta(days=3))
    IssueFactory(title="Needs your call", stage="needs_input", severity="P2")
    ErrorPattern.objects.create(name="Stale cache on /cart", created_at=now - timedelta(hours=5))

    with freeze_time(now - timedelta(hours=2)):  # 07:05 local: too early
        assert daily_digest_send() is None
    with freeze_time(now):
        summary = daily_digest_send()
        assert daily_digest_send() is None  # the hourly beat again: already sent today

    assert Digest.objects.get().date.isoformat() == "2026-06-02"
    sections = summary.detail["digest"]
    assert [item["title"] for item in sections["auto_fixed"]["items"]] == ["[P1] Cart total wrong"]
    assert sections["pending"]["items"][0]["title"] == "[P2] Needs your call"
    assert sections["new_patterns"]["items"][0]["title"] == "Stale cache on /cart"
    assert sections["proposals"]["items"][0] == {"title": "10 proposals ready", "body": "Top: dark mode"}
    assert sections["minor_alerts"]["items"][0]["title"] == "[P3] Typo on pricing page"
    assert Delivery.objects.get(notification=minor).status == "summarised"

    delivery = summary.deliveries.get()
    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"
    (email,) = mail.outbox
    assert email.subject == "[Kaizen P3] Summary: Daily digest for Tuesday 2 June"
    assert "== Fixed automatically (1) ==" in email.body and "- [P1] Cart total wrong" in email.body
    assert "== Waiting for you (1) ==" in email.body and "Typo on pricing page" in email.body
    html = email.alternatives[0][0]
    assert "<h3>Proposals ready (1)</h3>" in html and "Top: dark mode" in html


def test_the_digest_hour_follows_dst(channels, settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/London"
    settings.KAIZEN_NOTIFY_DIGEST_HOUR = 8
    with freeze_time(datetime(2026, 3, 30, 7, 30, tzinfo=UTC)):  # 08:30 BST, the Monday after the change
        assert daily_digest_send() is not None
    with freeze_time(datetime(2026, 3, 31, 6, 59, tzinfo=UTC)):  # 07:59 BST
        assert daily_digest_send() is None
    assert Digest.objects.count() == 1


def test_without_an_owner_address_the_digest_is_recorded_as_not_configured(no_channels):
    with freeze_time(datetime(2026, 6, 2, 12, tzinfo=UTC)):
        summary = daily_digest_send()
    assert summary.deliveries.get().status == "suppressed"
