"""The owner's day on a phone (390×844), in headless Chromium: sign in with the password and the
authenticator's code, check health on the dashboard, read an incident, approve a proposal, kill a
flag. Someone who is staff but not the owner does not get in. Screenshots go to the test's
artifacts folder."""

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from flags.models import Flag
from healing.models import AuditEntry, Change
from kaizen_site.security.two_factor import totp_now
from research.models import Category, Proposal, ProposalStatus
from research.schedule import owner_today
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory, ProjectFactory
from tests.owner import OWNER_PASSWORD, owner_create, owner_listed

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
SIDEWAYS = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def phone(chromium):
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def day(settings):
    """What the owner finds in the morning: an escalated incident, today's proposal, a live flag."""
    owner_listed(settings)
    owner = owner_create(password=OWNER_PASSWORD)
    project = ProjectFactory(name="Shop")
    issue = IssueFactory(project=project, title="Checkout answers 500 when the cart is empty", stage="escalated",
                         severity="P1")  # fmt: skip
    OccurrenceFactory(issue=issue)
    IssueEventFactory(issue=issue, stage="escalated", message="A person is on it.", detail="no pattern matched")
    proposal = Proposal.objects.create(
        day=owner_today(), origin="competitor", title="Deploy previews per change", what="Deploy previews",
        why="Rivals ship it.", how="Build it.", files=["healing/changes.py"], impact=8, effort=3, risk=2, edge=5,
        revenue=6, score=21.0, category=Category.QUICK_FIX, scored_by="heuristic",
        success_criteria="Works in canary.", abort_criteria="Any P0.",
    )  # fmt: skip
    flag = Flag.objects.create(project=project, key="new-checkout", enabled=True, rollout_percentage=100,
                               created_by="owner")  # fmt: skip
    return {"owner": owner, "issue": issue, "proposal": proposal, "flag": flag}


def sign_in(page, base: str, *, username: str, password: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def test_the_owner_runs_the_day_from_a_phone(live_server, phone, artifacts, day):
    base = live_server.url
    device = TOTPDevice.objects.get(user=day["owner"])
    sign_in(phone, base, username="admin", password=OWNER_PASSWORD)
    phone.wait_for_url("**/admin/two-factor/**")
    phone.fill("#id_otp_token", totp_now(device))
    phone.click("input[type=submit]")
    phone.wait_for_url(f"{base}/admin/")

    # Health first: the dashboard, whole on the phone's screen.
    dashboard = phone.locator("#kz-dashboard")
    assert dashboard.is_visible()
    assert "Escalated" in dashboard.inner_text() or "escalated" in dashboard.inner_text()
    assert phone.evaluate(SIDEWAYS) <= 0
    phone.screenshot(path=artifacts / "1-dashboard-390.png", full_page=True)

    # An incident, from the issue list.
    phone.goto(f"{base}/admin/healing/issue/?stage__exact=escalated")
    assert phone.evaluate(SIDEWAYS) <= 0
    phone.get_by_role("link", name=day["issue"].title).first.click()
    phone.wait_for_url(f"**/admin/healing/issue/{day['issue'].pk}/change/**")
    assert "A person is on it." in phone.content()
    phone.screenshot(path=artifacts / "2-incident-390.png", full_page=True)

    # Today's proposal, approved with one tap.
    phone.goto(f"{base}/admin/research/proposal/enhancements/")
    phone.get_by_role("button", name="Implement now").first.click()
    phone.wait_for_url("**/admin/research/proposal/enhancements/")
    proposal = Proposal.objects.get(pk=day["proposal"].pk)
    assert proposal.status != ProposalStatus.PROPOSED and proposal.change is not None
    assert Change.objects.filter(pk=proposal.change_id).exists()
    phone.screenshot(path=artifacts / "3-proposal-approved-390.png", full_page=True)

    # The flag, killed from the flag list's action.
    phone.goto(f"{base}/admin/flags/flag/")
    phone.locator(f"input[name=_selected_action][value='{day['flag'].pk}']").check()
    phone.select_option("select[name=action]", "kill_switch")
    phone.locator("button[name=index]").click()
    phone.wait_for_load_state()
    assert Flag.objects.get(pk=day["flag"].pk).killed
    phone.screenshot(path=artifacts / "4-flag-killed-390.png", full_page=True)
    assert AuditEntry.objects.filter(actor__icontains="admin").exists()


def test_staff_who_is_not_the_owner_does_not_get_in(live_server, phone, django_user_model, day):
    django_user_model.objects.create_superuser("helper", "helper@example.com", "helper-password")
    sign_in(phone, live_server.url, username="helper", password="helper-password")
    assert "/admin/login/" in phone.url
    assert phone.locator(".errornote").is_visible()
    phone.goto(f"{live_server.url}/admin/healing/issue/")
    assert "/admin/login/" in phone.url
