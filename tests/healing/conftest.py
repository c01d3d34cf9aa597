"""The demo product, on: as the product itself (demo_on) or as the live sandbox verification
replays against (sandbox)."""

import io

import pytest
from django.core.management import call_command


def demo_enable(settings, *, sandbox_url: str | None = None) -> None:
    settings.KAIZEN_DEMO = True
    settings.KAIZEN_SANDBOX_MODE = True
    settings.KAIZEN_SANDBOX_SECRET = "sandbox-secret"
    if sandbox_url:
        settings.KAIZEN_SANDBOX_URL = sandbox_url  # before kaizen_demo: its webhook points there
    call_command("kaizen_demo", stdout=io.StringIO())


@pytest.fixture
def demo_on(settings, db):
    demo_enable(settings)
    return settings


@pytest.fixture
def sandbox(live_server, settings):
    demo_enable(settings, sandbox_url=live_server.url)
    return live_server
