"""The console's owner in tests: an account whose email is in KAIZEN_OWNER_EMAILS, with a confirmed
TOTP device, signed in past the second factor — in a test Client or in a Playwright browser."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

OWNER_EMAIL = "admin@example.com"
OWNER_PASSWORD = "owner-password"  # noqa: S105 - a test account's


def owner_listed(settings_fixture, email: str = OWNER_EMAIL):
    """Adds `email` to KAIZEN_OWNER_EMAILS (pytest-django's `settings` fixture restores it)."""
    if email not in settings_fixture.KAIZEN_OWNER_EMAILS:
        settings_fixture.KAIZEN_OWNER_EMAILS = [*settings_fixture.KAIZEN_OWNER_EMAILS, email]
    return settings_fixture


def owner_create(*, username: str = "admin", email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD, **extra):
    """A superuser with the owner's address (list it with owner_listed) and a confirmed TOTP device."""
    users = get_user_model().objects
    user = users.filter(username=username).first()
    if user is None:
        user = users.create_superuser(username, email, password, **extra)
    else:  # made earlier in the test, e.g. by `kaizen_demo`: it becomes the owner
        user.email, user.is_staff, user.is_superuser = email, True, True
        user.set_password(password)
        user.save()
    TOTPDevice.objects.get_or_create(user=user, confirmed=True, defaults={"name": "Authenticator app"})
    return user


def owner_verify(client: Client, user) -> Client:
    """Signs `client` in as `user` and marks the session as past the second factor, as the code
    step does (django_otp.login)."""
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=True
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def owner_browser_login(context, *, base_url: str, user) -> None:
    """Gives a Playwright browser context the session cookie of a verified owner, so a test opens
    console pages without typing the password and a code (tests/e2e/test_console_login.py does
    the real sign-in). The live server must share this test's database."""
    client = owner_verify(Client(), user)
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
          "url": base_url}]
    )  # fmt: skip


def owner_staff(client: Client, settings_fixture, *, username: str = "viewer", permissions: tuple[str, ...] = ()):
    """An owner who is staff but not superuser, holding only `permissions` (codenames), signed in
    past the second factor on `client`: for tests of what each console permission allows."""
    from django.contrib.auth.models import Permission

    email = f"{username}@example.com"
    owner_listed(settings_fixture, email)
    user = get_user_model().objects.create_user(username, email, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    owner_verify(client, user)
    return user
