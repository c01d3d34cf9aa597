"""The console's channel page and test sends; the system checks that alert the owner."""

import pytest
import responses
from django.core import mail

from healing.models import AuditEntry
from notifications import system_checks
from notifications.models import Delivery, Notification

from .conftest import SLACK_URL

pytestmark = pytest.mark.django_db


def test_channel_page_says_which_are_configured(owner_client, channels, settings):
    settings.KAIZEN_DISCORD_WEBHOOK_URL = ""
    page = owner_client.get("/admin/notifications/notification/channels/").content.decode()
    assert "not configured — set KAIZEN_DISCORD_WEBHOOK_URL" in page
    assert page.count("Send a test notification") == 4


@responses.activate
def test_send_a_test_notification_per_channel(owner_client, channels):
    responses.post(SLACK_URL, body="ok")
    answer = owner_client.post("/admin/notifications/notification/channels/slack/test/", follow=True)
    owner_client.post("/admin/notifications/notification/channels/email/test/")

    assert "Test notification sent on slack" in answer.content.decode()
    assert set(Delivery.objects.values_list("channel", "status")) == {("slack", "sent"), ("email", "sent")}
    assert "Test notification" in responses.calls[0].request.body.decode()
    assert mail.outbox[0].subject == "[Kaizen P3] Kaizen needs attention: Test notification"
    assert AuditEntry.objects.filter(action="notification.test", actor="owner").count() == 2


def test_a_test_send_on_an_unconfigured_channel_sends_nothing(no_channels, owner_client):
    # no_channels first: it empties KAIZEN_OWNER_EMAILS, and owner_client lists the owner again.
    answer = owner_client.post("/admin/notifications/notification/channels/sms/test/", follow=True)
    assert "Sms is not configured" in answer.content.decode() and not Delivery.objects.exists()
    assert owner_client.get("/admin/notifications/notification/channels/sms/test/").status_code == 405


def test_backlog_and_missing_workers_alert_the_owner_once(channels, broker, settings, monkeypatch):
    settings.KAIZEN_NOTIFY_BACKLOG_THRESHOLD = 5
    monkeypatch.setattr(system_checks, "PING_TIMEOUT", 0.3)
    broker.rpush("P3", *[b"{}"] * 6)

    raised = system_checks.system_check_run()

    assert sorted(raised) == [
        "system:backlog:P3", "system:workers:critical", "system:workers:routine", "system:workers:urgent"
    ]  # fmt: skip
    backlog = Notification.objects.get(dedupe_key="system:backlog:P3")
    assert (backlog.kind, backlog.severity, backlog.title) == ("system_alert", "P1", "6 tasks waiting on queue P3")
    assert Notification.objects.get(dedupe_key="system:workers:urgent").severity == "P0"


def test_a_broker_that_is_down_pages_the_owner_without_the_broker(no_channels, settings):
    from tests.notifications.conftest import free_loopback_port

    settings.KAIZEN_OWNER_EMAILS = ["owner@example.com"]
    down = f"redis://127.0.0.1:{free_loopback_port()}/0"  # nothing listens there

    alert = system_checks.broker_down_alert(url=down)

    assert (alert.kind, alert.severity, alert.title) == ("system_alert", "P0", "The task broker is down")
    email = Delivery.objects.get(notification=alert, channel="email")
    assert email.status == "sent" and mail.outbox[0].subject.startswith("[Kaizen P0]")
    assert system_checks.broker_down_alert(url=settings.CELERY_BROKER_URL) is None


def test_the_history_links_to_the_channel_page(owner_client):
    page = owner_client.get("/admin/notifications/notification/").content.decode()
    assert 'href="/admin/notifications/notification/channels/"' in page
