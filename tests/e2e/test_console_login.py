"""In headless Chromium: the owner's first sign-in to the console — the password, the QR code of
the authenticator set-up, the six-digit code — lands on the console; a wrong code does not.
Screenshots go to the test's artifacts folder."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from kaizen_site.security.two_factor import totp_now
from tests.owner import OWNER_EMAIL, OWNER_PASSWORD, owner_browser_login, owner_listed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def new_owner(django_user_model, settings):
    owner_listed(settings)
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the wrong code is followed at once by the right one
    return django_user_model.objects.create_superuser("admin", OWNER_EMAIL, OWNER_PASSWORD)


def test_the_owner_signs_in_with_password_and_totp(live_server, browser_page, artifacts, new_owner):
    page = browser_page
    page.goto(f"{live_server.url}/admin/")
    assert page.url.startswith(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", OWNER_PASSWORD)
    page.click("input[type=submit]")

    page.wait_for_url("**/admin/two-factor/setup/**")
    qr = page.locator(".kaizen-qr svg")
    assert qr.is_visible() and qr.bounding_box()["width"] >= 200
    page.screenshot(path=artifacts / "1-two-factor-setup.png", full_page=True)

    page.fill("#id_otp_token", "000000")
    page.click("input[type=submit]")
    assert "not valid" in page.locator(".errornote").inner_text()

    device = TOTPDevice.objects.get(user=new_owner, confirmed=False)
    page.fill("#id_otp_token", totp_now(device))
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator("#site-name").is_visible() and page.locator("#user-tools").is_visible()
    page.screenshot(path=artifacts / "2-console.png", full_page=True)
    assert TOTPDevice.objects.get(pk=device.pk).confirmed


def test_on_a_phone_the_code_step_fits_the_screen(live_server, chromium, artifacts, new_owner):
    device = TOTPDevice.objects.create(user=new_owner, name="phone", confirmed=True)
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", OWNER_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/two-factor/**")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=artifacts / "two-factor-390.png", full_page=True)
        page.fill("#id_otp_token", totp_now(device))
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.screenshot(path=artifacts / "console-390.png", full_page=True)
    finally:
        context.close()


def test_the_owner_helper_gives_a_browser_a_verified_session(live_server, browser_page, admin_user):
    """tests.owner.owner_browser_login, which the other browser tests use to skip the sign-in."""
    owner_browser_login(browser_page.context, base_url=live_server.url, user=admin_user)
    browser_page.goto(f"{live_server.url}/admin/healing/auditentry/")
    assert browser_page.url == f"{live_server.url}/admin/healing/auditentry/"
    assert browser_page.locator("#user-tools").is_visible()
