"""Severity measures impact, not whether Kaizen could fix the problem: needing a person is a
stage; only more users, recurrence, a fix that failed in production or a rollback raise it."""

import pytest

from healing.ingest.classify import Impact, severity_raise
from healing.loop import pipeline
from healing.models import AuditEntry, Change, Incident, Issue, Stage
from tests.factories import IssueFactory
from tests.healing.ingest.sentry_support import envelope, sentry_event
from tests.healing.loop.test_pipeline import GENERATE, finish_rollout, report


@pytest.mark.django_db
def test_a_first_seen_sentry_error_without_an_llm_needs_a_person_at_its_own_severity(client, project_key, direct_mode):
    event = sentry_event(exception={"values": [{"type": "ValueError", "value": "unexpected widget state"}]})
    sdk_auth = f"Sentry sentry_version=7, sentry_client=sentry.python/2.0.0, sentry_key={project_key.public_key}"
    response = client.post(
        f"/api/{project_key.project_id}/envelope/",
        data=envelope(({"type": "event"}, event)),
        content_type="application/x-sentry-envelope",
        headers={"X-Sentry-Auth": sdk_auth},
    )
    assert response.status_code == 200
    issue = Issue.objects.get()

    pipeline.issue_process(issue_id=str(issue.pk))

    issue.refresh_from_db()
    assert issue.stage == Stage.ESCALATED  # "needs a person" is the stage...
    assert (issue.base_severity, issue.severity) == ("P2", "P2")  # ...not a page at P0
    alert = AuditEntry.objects.get(action="owner.alert", target=f"issue:{issue.pk}")
    assert (alert.detail["stage"], alert.detail["severity"]) == ("escalated", "P2")
    assert not AuditEntry.objects.filter(action="issue.severity_raise").exists()


@pytest.mark.django_db
def test_impact_raises_one_level_and_never_over_the_owner(db):
    issue = IssueFactory(severity="P2")
    pinned = IssueFactory(severity="P2", severity_pinned=True)
    top = IssueFactory(severity="P0")

    assert severity_raise(issue_id=issue.pk, impact=Impact.ROLLBACK, why="the canary degraded") == "P1"
    assert severity_raise(issue_id=pinned.pk, impact=Impact.ROLLBACK, why="x") is None
    assert severity_raise(issue_id=top.pk, impact=Impact.ROLLBACK, why="x") is None

    assert list(Issue.objects.order_by("severity").values_list("severity", flat=True)) == ["P0", "P1", "P2"]
    entry = AuditEntry.objects.get(action="issue.severity_raise")
    assert entry.detail == {"from": "P2", "to": "P1", "impact": "rollback", "why": "the canary degraded"}


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    settings.KAIZEN_ROLLOUT_CANARY_SECONDS = settings.KAIZEN_ROLLOUT_PARTIAL_SECONDS = 1
    settings.KAIZEN_ROLLOUT_FULL_SECONDS = 1
    return sandbox


@pytest.mark.django_db(transaction=True)
def test_a_fix_that_fails_in_production_raises_the_severity_once(sandbox):
    issue = report(GENERATE)
    finish_rollout()
    issue.refresh_from_db()
    first = Change.objects.get(issue=issue)
    assert (issue.stage, issue.severity) == (Stage.RESOLVED, "P1")

    again = report({**GENERATE, "user": {"id": "bob"}, "request": {**GENERATE["request"],
                                                                  "headers": {"X-Demo-User": "bob"}}})  # fmt: skip
    pipeline.issue_process(issue_id=str(issue.pk))  # a redelivery: raises nothing more

    again.refresh_from_db()
    assert again.pk == issue.pk and again.times_reopened == 1
    assert (again.base_severity, again.severity) == ("P1", "P0")
    assert Incident.objects.get(change=first).outcome == "fix_failed"
    raised = AuditEntry.objects.get(action="issue.severity_raise")
    assert raised.detail["impact"] == "fix_failed_in_production" and first.key in raised.detail["why"]
