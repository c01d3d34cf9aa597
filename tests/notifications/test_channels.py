"""Each channel through its real SDK or client, HTTP faked by `responses`: the exact request sent,
and the Delivery stored."""

import base64
import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.core import mail

from notifications.channels.push import beams_user_id
from notifications.deliveries import delivery_attempt
from notifications.models import Delivery, DeliveryStatus, Notification

from .conftest import (
    BEAMS_SECRET,
    BEAMS_USERS_URL,
    DISCORD_URL,
    SLACK_URL,
    TWILIO_MESSAGES_URL,
    TWILIO_SID,
    TWILIO_TOKEN,
)

pytestmark = pytest.mark.django_db


def queued(channel: str, *, severity: str = "P1", kind: str = "issue_detected") -> Delivery:
    notification = Notification.objects.create(
        kind=kind, severity=severity, target="issue:1", title="Checkout returns 500", body="42 users since 09:12."
    )
    return Delivery.objects.create(notification=notification, channel=channel)


@responses.activate
def test_push_publishes_to_the_owner_through_beams(channels, device):
    responses.post(BEAMS_USERS_URL, json={"publishId": "pubid-7f3a"})
    delivery = queued("push")

    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"

    call = responses.calls[0].request
    assert call.url == BEAMS_USERS_URL
    assert call.headers["Authorization"] == f"Bearer {BEAMS_SECRET}"
    body = json.loads(call.body)
    assert body["users"] == [beams_user_id(device.user_id)]
    assert body["web"]["notification"]["title"] == "New P1 issue: Checkout returns 500"
    assert body["web"]["notification"]["body"] == "42 users since 09:12."
    assert body["web"]["notification"]["deep_link"].startswith("https://kaizen.example.com/admin/notifications/")
    assert body["apns"]["aps"]["alert"]["title"] == body["fcm"]["notification"]["title"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_id, delivery.attempts, delivery.error) == ("sent", "pubid-7f3a", 1, "")


@responses.activate
def test_push_rate_limit_is_transient_and_honours_retry_after(channels, device):
    responses.post(BEAMS_USERS_URL, status=429, json={"error": "rate limited", "description": "slow down"},
                   headers={"Retry-After": "120"})  # fmt: skip
    delivery = queued("push")

    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert (attempt.status, attempt.retry_in) == ("queued", 120.0)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED and "rate limit" in delivery.error


@responses.activate
def test_push_bad_credentials_are_permanent(channels, device):
    responses.post(BEAMS_USERS_URL, status=401, json={"error": "unauthorized", "description": "bad key"})
    delivery = queued("push")

    assert delivery_attempt(delivery_id=delivery.pk).status == "failed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and "credentials" in delivery.error


def test_push_with_no_subscribed_device_fails_without_a_request(channels):
    delivery = queued("push")
    with responses.RequestsMock():  # any request would raise
        assert delivery_attempt(delivery_id=delivery.pk).status == "failed"
    assert Delivery.objects.get(pk=delivery.pk).error == "no device subscribed to push"


@responses.activate
def test_sms_goes_through_twilio_with_basic_auth_and_fits_one_segment(channels):
    responses.post(
        TWILIO_MESSAGES_URL, status=201, json={"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}
    )
    delivery = queued("sms", severity="P0")
    Notification.objects.filter(pk=delivery.notification_id).update(body="x" * 300)

    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"

    call = responses.calls[0].request
    assert call.url == TWILIO_MESSAGES_URL
    assert (
        call.headers["Authorization"] == "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    )
    form = parse_qs(call.body)
    assert form["To"] == ["+33612345678"] and form["From"] == ["+15005550006"]
    assert form["Body"][0].startswith("Kaizen P0 issue: Checkout returns 500.") and len(form["Body"][0]) == 160
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_id) == ("sent", "SM0123456789abcdef0123456789abcdef")


@responses.activate
def test_sms_to_an_invalid_number_is_permanent(channels):
    responses.post(TWILIO_MESSAGES_URL, status=400,
                   json={"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400})  # fmt: skip
    delivery = queued("sms")

    assert delivery_attempt(delivery_id=delivery.pk).status == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "21211" in delivery.error and delivery.attempts == 1


@responses.activate
def test_sms_timeout_is_transient(channels):
    responses.post(TWILIO_MESSAGES_URL, body=requests.ConnectTimeout("timed out"))
    delivery = queued("sms")

    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert attempt.status == "queued" and attempt.retry_in == channels.KAIZEN_NOTIFY_BACKOFF_SECONDS
    assert "could not reach Twilio" in Delivery.objects.get(pk=delivery.pk).error


def test_email_through_django_mail_with_text_and_html(channels):
    delivery = queued("email", severity="P3")

    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"

    (message,) = mail.outbox
    assert message.to == ["owner@example.com"]
    assert message.subject == "[Kaizen P3] New P3 issue: Checkout returns 500"
    assert "42 users since 09:12." in message.body
    html, mime = message.alternatives[0]
    assert mime == "text/html" and "<h2" in html and "Checkout returns 500" in html
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.provider_id == message.extra_headers["Message-ID"]


@responses.activate
def test_slack_goes_through_the_webhook_client(channels):
    responses.post(SLACK_URL, body="ok")
    delivery = queued("slack", severity="P0")

    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"

    call = responses.calls[0].request
    assert call.url == SLACK_URL and call.headers["Content-Type"] == "application/json"
    text = json.loads(call.body)["text"]
    assert text.startswith("🔴 *New P0 issue: Checkout returns 500*") and "|Open in Kaizen>" in text
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


@responses.activate
def test_discord_waits_for_the_message_id_and_never_pings(channels):
    responses.post(DISCORD_URL + "?wait=true", json={"id": "1122334455", "content": "..."})
    delivery = queued("discord")

    assert delivery_attempt(delivery_id=delivery.pk).status == "sent"

    body = json.loads(responses.calls[0].request.body)
    assert body["allowed_mentions"] == {"parse": []} and "**New P1 issue: Checkout returns 500**" in body["content"]
    assert Delivery.objects.get(pk=delivery.pk).provider_id == "1122334455"


@responses.activate
def test_discord_5xx_retries_with_its_retry_after(channels):
    responses.post(DISCORD_URL + "?wait=true", status=503, headers={"Retry-After": "30"})
    delivery = queued("discord")

    attempt = delivery_attempt(delivery_id=delivery.pk)

    assert (attempt.status, attempt.retry_in) == ("queued", 30.0)
    assert "Discord answered HTTP 503" in Delivery.objects.get(pk=delivery.pk).error
