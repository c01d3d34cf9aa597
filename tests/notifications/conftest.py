"""Notification fixtures: every channel configured with fake credentials, the owner and a device,
and what was published to the real Redis broker."""

import socket

import pytest
from django.contrib.auth import get_user_model

from notifications.models import Device
from tests.owner import owner_listed, owner_verify

BEAMS_INSTANCE = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
BEAMS_SECRET = "beams-secret-key-0123456789abcdef0123"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXX"
DISCORD_URL = "https://discord.com/api/webhooks/123/abc"
BEAMS_USERS_URL = (
    f"https://{BEAMS_INSTANCE}.pushnotifications.pusher.com/publish_api/v1/instances/{BEAMS_INSTANCE}/publishes/users"
)
TWILIO_MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture
def channels(settings):
    """All five channels configured (the HTTP ones are faked with `responses` by each test)."""
    settings.KAIZEN_BEAMS_INSTANCE_ID = BEAMS_INSTANCE
    settings.KAIZEN_BEAMS_SECRET_KEY = BEAMS_SECRET
    settings.KAIZEN_BEAMS_ENDPOINT = ""
    settings.KAIZEN_BEAMS_CA_BUNDLE = ""
    settings.KAIZEN_TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.KAIZEN_TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.KAIZEN_TWILIO_FROM = "+15005550006"
    settings.KAIZEN_TWILIO_BASE_URL = ""
    settings.KAIZEN_OWNER_PHONE = "+33612345678"
    settings.KAIZEN_OWNER_EMAILS = ["owner@example.com"]
    settings.KAIZEN_SLACK_WEBHOOK_URL = SLACK_URL
    settings.KAIZEN_DISCORD_WEBHOOK_URL = DISCORD_URL
    settings.KAIZEN_OWNER_TIMEZONE = "UTC"
    settings.KAIZEN_PUBLIC_URL = "https://kaizen.example.com"
    return settings


@pytest.fixture
def no_channels(settings):
    for name in ("KAIZEN_BEAMS_INSTANCE_ID", "KAIZEN_BEAMS_SECRET_KEY", "KAIZEN_TWILIO_ACCOUNT_SID",
                 "KAIZEN_TWILIO_AUTH_TOKEN", "KAIZEN_TWILIO_FROM", "KAIZEN_OWNER_PHONE", "KAIZEN_SLACK_WEBHOOK_URL",
                 "KAIZEN_DISCORD_WEBHOOK_URL"):  # fmt: skip
        setattr(settings, name, "")
    settings.KAIZEN_OWNER_EMAILS = []
    return settings


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user(
        username="owner", email="owner@example.com", password="pw", is_staff=True, is_superuser=True
    )


@pytest.fixture
def device(owner):
    return Device.objects.create(user=owner, device_id="web-1", platform="web", name="Laptop")


@pytest.fixture
def owner_client(client, owner, settings):
    """The owner's console session, past the second factor (its address is one of the owner's)."""
    owner_listed(settings, owner.email)
    return owner_verify(client, owner)


def free_loopback_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
