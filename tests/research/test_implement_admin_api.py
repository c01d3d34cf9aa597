"""Implement → Change through the ticket services; completion → What's New; the console's
Enhancements page and its actions (state asserted); GET /api/v1/whats-new."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from flags.models import Flag
from healing.changes.lifecycle import change_transition
from healing.models import AuditEntry, Change, ChangeStatus, PromotionLogEntry
from research.implement import ProposalError, finished_changes_sweep, proposal_implement, scheduled_due
from research.models import Category, Proposal, ProposalStatus, WhatsNew
from research.schedule import owner_today

pytestmark = pytest.mark.django_db


def make(title: str = "Deploy previews per change", *, category: str = Category.QUICK_FIX, **extra) -> Proposal:
    fields = dict(
        day=owner_today(), origin="competitor", title=title, what=title, why="Rivals ship it.", how="Build it.",
        files=["healing/changes.py"], impact=8, effort=3, risk=2, edge=5, revenue=6, score=21.0, category=category,
        scored_by="heuristic", success_criteria="Works in canary.", abort_criteria="Any P0.",
    )  # fmt: skip
    fields.update(extra)
    return Proposal.objects.create(**fields)


def test_implement_opens_a_change_with_plan_criteria_and_a_ten_percent_flag(project):
    proposal = make()
    change = proposal_implement(proposal=proposal, actor="owner")
    change.refresh_from_db()
    assert change.key.startswith("KAIZ-") and change.status == ChangeStatus.IN_PROGRESS
    assert change.severity == "P3" and change.created_by == "owner"
    assert "## How\nBuild it." in change.patch_summary and "`healing/changes.py`" in change.objective
    assert change.success_criteria == "Works in canary." and change.abort_criteria == "Any P0."
    assert change.scorecard["diagnosis"]["rollout"] == {"canary_percent": 10}
    flag = Flag.objects.get(project=project, key=change.flag_key)
    assert flag.rollout_percentage == 10 and not flag.enabled
    moves = list(PromotionLogEntry.objects.filter(change=change).values_list("to_status", flat=True).order_by("pk"))
    assert moves == [ChangeStatus.DRAFT, ChangeStatus.PLANNED, ChangeStatus.IN_PROGRESS]
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.IMPLEMENTING and proposal.change == change
    with pytest.raises(ProposalError):
        proposal_implement(proposal=proposal, actor="owner")
    assert Change.objects.count() == 1


def test_completion_produces_whats_new_and_a_changelog_line(django_capture_on_commit_callbacks):
    proposal = make()
    change = proposal_implement(proposal=proposal, actor="owner")
    with django_capture_on_commit_callbacks(execute=True):
        for status in (ChangeStatus.IN_REVIEW, ChangeStatus.CANARY, ChangeStatus.COMPLETE):
            change = change_transition(change=change, to=status, actor="kaizen", why="test")
    entry = WhatsNew.objects.get(proposal=proposal)
    assert entry.title == proposal.title and entry.changelog_line.endswith("— Deploy previews per change")
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.SHIPPED


def test_an_aborted_change_abandons_the_proposal_and_the_sweep_catches_missed_signals():
    proposal = make()
    change = proposal_implement(proposal=proposal, actor="owner")
    Change.objects.filter(pk=change.pk).update(status=ChangeStatus.ABORTED)  # as if the signal was lost
    assert finished_changes_sweep() == 1
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.ABANDONED and not WhatsNew.objects.exists()


def test_scheduled_proposals_are_implemented_on_their_day():
    proposal = make(status=ProposalStatus.SCHEDULED, scheduled_for=owner_today() - timedelta(days=1))
    later = make("Something later", status=ProposalStatus.SCHEDULED, scheduled_for=owner_today() + timedelta(days=3))
    changes = scheduled_due(today=owner_today(), actor="kaizen")
    assert [c.proposal.pk for c in changes] == [proposal.pk]
    later.refresh_from_db()
    assert later.status == ProposalStatus.SCHEDULED and later.change is None


def test_enhancements_page_shows_two_sections_with_scores(admin_client):
    make("Quick one")
    make("Big one", category=Category.HIGH_IMPACT, score=30.5)
    page = admin_client.get(reverse("admin:research_enhancements")).content.decode()
    assert (
        page.index("High impact (1)") < page.index("Big one") < page.index("Quick fixes (1)") < page.index("Quick one")
    )
    assert "30.5" in page and "Implement now" in page


def test_admin_implement_now(admin_client):
    proposal = make()
    response = admin_client.post(reverse("admin:research_proposal_decide", args=[proposal.pk, "implement"]))
    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.IMPLEMENTING and proposal.decided_by == "admin"
    assert proposal.change.status == ChangeStatus.IN_PROGRESS
    assert AuditEntry.objects.filter(action="proposal.implementing", target=f"proposal:{proposal.pk}").exists()


def test_admin_schedule_for_later(admin_client):
    proposal = make()
    on = owner_today() + timedelta(days=2)
    admin_client.post(reverse("admin:research_proposal_decide", args=[proposal.pk, "schedule"]), {"on": on.isoformat()})
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.SCHEDULED and proposal.scheduled_for == on
    assert Change.objects.count() == 0


def test_admin_schedule_refuses_a_bad_day(admin_client):
    proposal = make()
    url = reverse("admin:research_proposal_decide", args=[proposal.pk, "schedule"])
    response = admin_client.post(url, {"on": "next tuesday"}, follow=True)
    assert "YYYY-MM-DD" in response.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PROPOSED


def test_admin_dismiss_needs_a_reason(admin_client):
    proposal = make()
    url = reverse("admin:research_proposal_decide", args=[proposal.pk, "dismiss"])
    admin_client.post(url, {"reason": "  "})
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PROPOSED
    admin_client.post(url, {"reason": "Not our market"})
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.DISMISSED and proposal.dismiss_reason == "Not our market"


def test_whats_new_api(client):
    proposal = make()
    WhatsNew.objects.create(proposal=proposal, title="Deploy previews", body="Preview every change.",
                            changelog_line="2026-11-30 — Deploy previews", published_at=timezone.now())  # fmt: skip
    body = client.get("/api/v1/whats-new").json()
    assert body["entries"][0]["title"] == "Deploy previews"
    assert body["changelog"] == ["2026-11-30 — Deploy previews"]
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert client.get("/api/v1/whats-new", {"since": future}).json()["entries"] == []


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "abc"}, {"since": "yesterday"}])
def test_whats_new_bad_query_is_a_clear_400(client, query):
    response = client.get("/api/v1/whats-new", query)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and response.json()["detail"]


def test_editing_a_source_address_forgets_its_validators(admin_client):
    from research.models import Source

    source = Source.objects.create(kind="feed", name="Edited", url="https://old.example/feed", etag='"v1"',
                                   last_modified="Sun, 29 Nov 2026 10:00:00 GMT")  # fmt: skip
    url = reverse("admin:research_source_change", args=[source.pk])
    response = admin_client.post(url, {"kind": "feed", "name": "Edited", "url": "https://new.example/feed",
                                       "params": "{}", "enabled": "on", "disabled_reason": ""})  # fmt: skip
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.url == "https://new.example/feed" and source.etag == "" and source.last_modified == ""
