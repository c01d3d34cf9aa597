"""Signing in to the console: the password, then the second factor — enrolled with a QR code the
first time, a code from the app afterwards — and the lock-out after repeated wrong passwords."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from healing.models import AuditEntry
from kaizen_site.security.two_factor import totp_now
from tests.owner import OWNER_EMAIL, OWNER_PASSWORD, owner_listed

pytestmark = pytest.mark.django_db


@pytest.fixture
def new_owner(settings):
    """The owner's account as kaizen_demo makes it: an owner address, no second factor yet."""
    owner_listed(settings)
    # django-otp throttles a device after a wrong code (2^n seconds); the tests try right after.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    return get_user_model().objects.create_superuser("admin", OWNER_EMAIL, OWNER_PASSWORD)


def _password(client: Client, *, username: str = "admin", password: str = OWNER_PASSWORD):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_first_sign_in_enrols_an_authenticator_with_a_qr_code(new_owner):
    client = Client()
    assert _password(client).status_code == 302
    # The password alone opens nothing: the console sends the owner on to set up a second factor.
    answer = client.get("/admin/", follow=True)
    assert answer.redirect_chain[-1][0] == "/admin/two-factor/setup/?next=/admin/"
    page = answer.content.decode()
    assert 'class="kaizen-qr"' in page and "authenticator app" in page
    device = TOTPDevice.objects.get(user=new_owner, confirmed=False)
    assert device.config_url.startswith("otpauth://totp/Kaizen%3Aadmin?") or "issuer=Kaizen" in device.config_url
    assert client.get("/admin/flags/flag/").status_code == 302

    wrong = client.post("/admin/two-factor/setup/", {"otp_token": "000000", "next": "/admin/"})
    assert wrong.status_code == 200 and "not valid" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302

    done = client.post("/admin/two-factor/setup/", {"otp_token": totp_now(device), "next": "/admin/"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    assert AuditEntry.objects.filter(actor="admin", action="console.two_factor_enrol", ip="127.0.0.1").exists()


def test_an_enrolled_owner_gives_a_code_at_every_sign_in(new_owner):
    device = TOTPDevice.objects.create(user=new_owner, name="phone", confirmed=True)
    client = Client()
    _password(client)
    answer = client.get("/admin/", follow=True)
    assert answer.redirect_chain[-1][0] == "/admin/two-factor/?next=/admin/"
    assert (
        'class="kaizen-qr"' not in answer.content.decode()
    )  # no new secret is shown to someone with only the password
    assert client.post("/admin/two-factor/", {"otp_token": "12345x"}).status_code == 200
    assert client.get("/admin/").status_code == 302
    assert client.post("/admin/two-factor/", {"otp_token": totp_now(device)}).status_code == 302
    assert client.get("/admin/").status_code == 200
    # With a confirmed device, the set-up page sends back to the code step: no second enrolment.
    assert Client().get("/admin/two-factor/setup/").status_code == 302


def test_staff_who_is_not_the_owner_is_refused_at_the_password(new_owner):
    get_user_model().objects.create_superuser("staff", "staff@example.com", "staff-password")
    client = Client()
    answer = _password(client, username="staff", password="staff-password")
    assert answer.status_code == 200 and "Please enter the correct username and password" in answer.content.decode()
    assert not _signed_in(client)


def test_an_owner_address_needs_the_exact_listed_email(new_owner, settings):
    settings.KAIZEN_OWNER_EMAILS = ["someone-else@example.com"]
    client = Client()
    assert _password(client).status_code == 200 and not _signed_in(client)


def test_thirty_wrong_passwords_lock_the_account_out_even_with_the_right_one(new_owner, settings):
    client = Client()
    for _ in range(30):
        _password(client, password="wrong")
    locked = _password(client)
    assert locked.status_code == 429 and "axes_reset" in locked.content.decode()
    assert not _signed_in(client)
    # Another address is not locked out by this one's failures (username and address together).
    elsewhere = Client(REMOTE_ADDR="192.0.2.10")
    assert _password(elsewhere).status_code == 302

    call_command("axes_reset", verbosity=0)
    assert _password(client).status_code == 302 and _signed_in(client)


def test_the_lock_out_starts_at_the_configured_limit(new_owner, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _password(client, password="wrong").status_code == 200
    assert _password(client, password="wrong").status_code == 429
    assert _password(client).status_code == 429


def test_the_owner_can_sign_out_between_the_password_and_the_code(new_owner):
    TOTPDevice.objects.create(user=new_owner, name="phone", confirmed=True)
    client = Client()
    _password(client)
    assert client.get("/admin/two-factor/").status_code == 200
    answer = client.post("/admin/two-factor/sign-out/")
    assert answer.status_code == 302 and answer["Location"] == "/admin/login/"
    assert not _signed_in(client)


def test_a_wrong_code_makes_the_device_wait_before_the_next_try(new_owner, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 1
    device = TOTPDevice.objects.create(user=new_owner, name="phone", confirmed=True)
    client = Client()
    _password(client)
    client.post("/admin/two-factor/", {"otp_token": "000000"})
    answer = client.post("/admin/two-factor/", {"otp_token": totp_now(device)})
    assert "Too many wrong codes" in answer.content.decode()
    assert client.get("/admin/").status_code == 302
