"""KAIZEN_ADMIN_IP_ALLOWLIST: the console and the owner APIs answer only the listed networks; a
proxy's address header is believed only when KAIZEN_TRUSTED_PROXY_HEADER names it."""

import pytest
from django.core.checks import run_checks

pytestmark = pytest.mark.django_db


@pytest.fixture
def allowlisted(settings):
    settings.KAIZEN_ADMIN_IP_ALLOWLIST = ["10.0.0.0/8", "2001:db8::/32"]
    return settings


def test_the_console_answers_only_listed_networks(admin_client, allowlisted):
    assert admin_client.get("/admin/", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert admin_client.get("/admin/", REMOTE_ADDR="2001:db8::7").status_code == 200
    assert admin_client.get("/admin/", REMOTE_ADDR="192.0.2.1").status_code == 403
    # Even the login page: outside the list, there is no door to knock on.
    assert admin_client.get("/admin/login/", REMOTE_ADDR="192.0.2.1").status_code == 403


def test_the_owner_apis_answer_only_listed_networks(admin_client, allowlisted):
    assert admin_client.get("/api/v1/notifications", REMOTE_ADDR="10.1.2.3").status_code == 200
    refused = admin_client.get("/api/v1/notifications", REMOTE_ADDR="192.0.2.1")
    assert refused.status_code == 403 and refused.json()["error"] == "permission_denied"


def test_an_address_header_is_ignored_unless_a_trusted_proxy_is_configured(admin_client, allowlisted):
    spoofed = admin_client.get("/admin/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert spoofed.status_code == 403


def test_a_trusted_proxys_header_is_believed_for_the_address_it_saw(admin_client, allowlisted):
    allowlisted.KAIZEN_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    assert admin_client.get("/admin/", REMOTE_ADDR="172.16.0.2", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200
    # What the client wrote before the proxy's own entry proves nothing.
    assert admin_client.get("/admin/", REMOTE_ADDR="172.16.0.2",
                            HTTP_X_FORWARDED_FOR="10.1.2.3, 192.0.2.1").status_code == 403  # fmt: skip


def test_a_malformed_allowlist_admits_nobody_and_the_check_says_so(admin_client, settings):
    settings.KAIZEN_ADMIN_IP_ALLOWLIST = ["10.0.0.0/33"]
    assert admin_client.get("/admin/", REMOTE_ADDR="10.1.2.3").status_code == 403
    errors = [m for m in run_checks() if m.id == "kaizen.E201"]
    assert errors and "KAIZEN_ADMIN_IP_ALLOWLIST" in errors[0].msg


def test_no_allowlist_admits_any_address(admin_client):
    assert admin_client.get("/admin/", REMOTE_ADDR="198.51.100.9").status_code == 200
