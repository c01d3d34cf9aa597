"""The console in headless Chromium: the dashboard on a phone (390×844) and a desktop, light and
dark, the issue list on a phone without sideways scrolling, and the dashboard refreshing in place.
Screenshots go to the test's artifacts folder."""

from datetime import timedelta

import pytest
from django.utils import timezone

from kaizen_site import dashboard
from tests.factories import IssueFactory, ProjectFactory
from tests.owner import owner_browser_login, owner_create, owner_listed

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SIDEWAYS = "document.documentElement.scrollWidth - window.innerWidth"
# What the admin's own stylesheet sets as the page background in each theme (--body-bg).
BACKGROUND = {"light": "rgb(255, 255, 255)", "dark": "rgb(18, 18, 18)"}


@pytest.fixture
def console(django_db_setup, live_server, browser_page, owner):
    """A signed-in console page. The test database is set up first: Django refuses database work
    on a thread where Playwright's event loop already runs."""
    owner_browser_login(browser_page.context, base_url=live_server.url, user=owner)
    return browser_page


@pytest.fixture
def owner(settings):
    owner_listed(settings)
    return owner_create()


@pytest.fixture
def issues():
    """A fortnight of issues, some with the long unbroken titles real errors have."""
    project = ProjectFactory(name="Shop")
    now = timezone.now()
    for n in range(40):
        first = now - timedelta(hours=n * 8)
        resolved = n % 3 == 0
        IssueFactory(
            project=project,
            title=f"TypeError: Cannot read properties of undefined (reading 'items') at /checkout/step/{n}/"
            "confirm?cart=7f3a9c1e2b4d5f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e",
            severity=("P0", "P1", "P2", "P3")[n % 4],
            stage=("resolved", "escalated", "diagnosing")[n % 3],
            first_seen=first,
            last_seen=first + timedelta(hours=1),
            resolved_at=first + timedelta(minutes=20 + n) if resolved else None,
        )
    return project


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_fits_a_phone_and_a_desktop(console, live_server, artifacts, issues, scheme):
    page = console
    page.emulate_media(color_scheme=scheme)
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server.url}/admin/")
        page.wait_for_selector("#kz-dashboard svg.kz-chart")

        page.screenshot(path=artifacts / f"dashboard-{name}-{scheme}.png", full_page=True)
        assert page.evaluate(SIDEWAYS) <= 0, f"the {name} page scrolls sideways"
        assert page.locator("#kz-dashboard svg[role=img]").count() >= 2  # MTTR and issues per day
        assert page.get_by_role("link", name="Issues needing you").is_visible()
        assert page.locator("#content-main .app-healing").is_visible()  # the app list is still there
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[scheme]


def test_the_issue_list_reads_as_cards_on_a_phone(console, live_server, artifacts, issues):
    page = console
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/healing/issue/")

    page.screenshot(path=artifacts / "issue-list-phone.png")
    assert page.evaluate(SIDEWAYS) <= 0
    title = page.locator("#result_list .field-title a").first
    box = title.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # the whole title on screen


def test_the_dashboard_refreshes_in_place(console, live_server, artifacts, issues, monkeypatch):
    monkeypatch.setattr(dashboard, "REFRESH_SECONDS", 1)
    page = console
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/")
    needing = page.get_by_role("link", name="Issues needing you").locator("b")
    before = int(needing.inner_text())
    page.evaluate("window.scrollTo(0, 700)")

    IssueFactory(project=issues, stage="escalated", first_seen=timezone.now(), last_seen=timezone.now())
    page.wait_for_function(
        "n => document.querySelector('.kz-actions b').textContent.trim() === String(n)", arg=before + 1, timeout=10_000
    )

    assert page.evaluate("window.scrollY") == 700  # the owner keeps their place
    page.screenshot(path=artifacts / "dashboard-refreshed.png")
