"""The incident page in a real browser, on a phone and at desktop size: the stack trace's frames,
the timeline, the session recording played by rrweb-player, and a button that closes the incident."""

import base64
import gzip
import json

import pytest
from django.conf import settings

from healing.changes.lifecycle import change_create
from healing.models import AuditEntry, Change, Issue, SessionEvent, UserSession
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
# A tiny rrweb recording: a meta event and a full snapshot of a page with one heading.
EVENTS = [
    {"type": 4, "timestamp": 1_000, "data": {"href": "https://shop.example.com/checkout", "width": 390, "height": 600}},
    {"type": 2, "timestamp": 1_010, "data": {"initialOffset": {"left": 0, "top": 0}, "node": {
        "type": 0, "id": 1, "childNodes": [{"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [
            {"type": 2, "id": 3, "tagName": "body", "attributes": {}, "childNodes": [
                {"type": 2, "id": 4, "tagName": "h1", "attributes": {}, "childNodes": [
                    {"type": 3, "id": 5, "textContent": "Checkout"}]}]}]}]}}},
    {"type": 3, "timestamp": 2_000, "data": {"source": 2, "type": 2, "id": 4, "x": 10, "y": 10}},
]  # fmt: skip


@pytest.fixture
def incident():
    issue = IssueFactory(title="Checkout crashes with an empty cart", severity="P1", stage="escalated")
    recording = base64.b64encode(gzip.compress(json.dumps(EVENTS).encode())).decode()
    OccurrenceFactory(issue=issue, user_email="alice@example.com", payload={
        "message": "ZeroDivisionError: division by zero", "recording": recording, "description": "I pressed Pay.",
        "exception": {"type": "ZeroDivisionError", "value": "division by zero", "stacktrace": [
            {"function": "dispatch", "filename": "django/core/handlers/base.py", "lineno": 197, "in_app": False},
            {"function": "checkout", "filename": "shop/views.py", "lineno": 42, "in_app": True},
        ]},
    })  # fmt: skip
    change = change_create(title="Guard the empty cart", severity="P1", actor="kaizen", issue=issue)
    IssueEventFactory(issue=issue, stage="detected", message="We noticed a problem and are looking into it.")
    IssueEventFactory(issue=issue, stage="escalated", message="This one needs a person.", detail=f"{change.key} held")
    return issue


@pytest.fixture
def page(live_server, admin_client, incident, browser_page):
    """A Chromium page signed in as the test's admin (a verified owner)."""
    cookie = admin_client.cookies[settings.SESSION_COOKIE_NAME]
    browser_page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    return browser_page


def test_an_incident_reads_well_on_a_phone_and_plays_its_recording(page, live_server, incident, artifacts):
    url = f"{live_server.url}/admin/healing/issue/{incident.pk}/change/"

    for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        # What is checked is awaited below; "load" would also wait for every subresource of the
        # page, which once took over goto's 30 s on a loaded CI machine.
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#incident-player .rr-player", timeout=30_000)  # the player mounted
        page.screenshot(path=artifacts / f"incident-{name}.png", full_page=True)
        page.locator(".incident").screenshot(path=artifacts / f"incident-{name}-panel.png")
        page.locator("section[aria-label='Session recording']").screenshot(path=artifacts / f"recording-{name}.png")
        # The player sits inside its section (rrweb-player floats itself).
        player, section = (
            page.locator(sel).bounding_box()
            for sel in ("#incident-player .rr-player", "section[aria-label='Session recording']")
        )
        assert player["y"] + player["height"] <= section["y"] + section["height"] + 1
        assert player["width"] <= viewport["width"]

    assert page.locator(".incident-frames li.in-app").count() == 1
    assert page.locator(".incident-timeline li").count() == 2
    ticket = page.locator(".incident-ticket")
    assert ticket.inner_text().startswith("KAIZ-")
    frame = page.frame_locator("#incident-player iframe")
    assert frame.locator("h1").inner_text(timeout=10_000) == "Checkout"  # the recorded page, replayed
    # Every section fits the phone's width: nothing on the incident page scrolls sideways.
    overflow = page.evaluate(
        "() => [...document.querySelectorAll('.incident .module')].filter(m => m.scrollWidth > m.clientWidth + 1)"
        ".map(m => m.getAttribute('aria-label'))"
    )
    assert overflow == []

    page.locator(".incident-action", has_text="Not a problem").get_by_role("button").click()
    page.wait_for_selector(".messagelist .success")
    page.screenshot(path=artifacts / "incident-closed-phone.png", full_page=True)
    assert Issue.objects.get(pk=incident.pk).stage == "resolved"
    assert AuditEntry.objects.filter(action="issue.not_a_problem", actor="admin").exists()


def test_quick_fix_and_end_users_on_a_phone(page, live_server, incident, artifacts):
    session = UserSession.objects.create(project=incident.project, session_id="s-live-1", user_id="u-42",
                                         user_email="alice@example.com")  # fmt: skip
    page.set_viewport_size(PHONE)

    page.goto(f"{live_server.url}/admin/healing/quick-fix/")
    page.fill("textarea[name=text]", "Checkout crashes when the cart is empty")
    page.click("input[name=assess]")
    page.wait_for_selector("section[aria-label='Similar issues']")
    page.screenshot(path=artifacts / "quick-fix-phone.png", full_page=True)
    assert page.locator("section[aria-label='Similar issues'] a", has_text="Checkout crashes").count() == 1
    assert "Off:" in page.locator("section[aria-label='AI recommendation']").inner_text()
    page.click("button[value=apply]")
    page.wait_for_selector(".messagelist .success")
    change = Change.objects.order_by("-number").first()
    assert change.status == "in_progress" and change.issue_id == incident.pk

    page.goto(f"{live_server.url}/admin/healing/end-users/?q=ALICE@example.com")
    page.wait_for_selector("section[aria-label='Sessions']")
    page.fill("input[name=text]", "We fixed it: try again?")
    page.screenshot(path=artifacts / "end-users-phone.png", full_page=True)
    page.locator("section[aria-label='Sessions'] button", has_text="Send").click()
    page.wait_for_selector(".messagelist .success")
    assert SessionEvent.objects.get(session=session).payload["message"] == "We fixed it: try again?"
