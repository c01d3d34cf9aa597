"""A per-user remediation fixes the affected user's case (mitigated), not the cause (resolved):
the user is told so, learning and metrics count it as such, and the next report of the problem
sends the issue back to work."""

import pytest
from prometheus_client import REGISTRY

from healing.loop import outcomes
from healing.models import Change, ChangeStatus, Incident, IssueEvent, RemediationRun, Stage
from tests.healing.loop.test_pipeline import CREDITS, demo_call, report, stages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    return sandbox


def fixes(outcome: str) -> float:
    return REGISTRY.get_sample_value("kaizen_fixes_total", {"outcome": outcome, "level": "pattern"}) or 0.0


def mttr_count(scope: str) -> float:
    return REGISTRY.get_sample_value("kaizen_mttr_seconds_count", {"scope": scope, "level": "pattern"}) or 0.0


def test_a_per_user_resync_mitigates_and_the_next_purchase_sends_it_back_to_work(sandbox):
    mitigated_before, resolved_before = fixes("mitigated"), fixes("resolved")
    user_mttr_before, full_mttr_before = mttr_count("user"), mttr_count("full")
    demo_call("POST", "/demo/api/purchase", user="alice", body={"credits": 100})

    issue = report(CREDITS)

    assert (issue.stage, issue.resolved_at) == (Stage.MITIGATED, None)
    told = IssueEvent.objects.filter(issue=issue).last().message
    assert told.startswith("**Fixed.**")  # for this user: what the popup shows as "Fixed"
    assert Incident.objects.get(change__issue=issue).outcome == "mitigated"
    assert (fixes("mitigated") - mitigated_before, fixes("resolved") - resolved_before) == (1, 0)
    assert (mttr_count("user") - user_mttr_before, mttr_count("full") - full_mttr_before) == (1, 0)

    # The cause is still there: bob's purchase is lost the same way, and his report reopens it.
    demo_call("POST", "/demo/api/purchase", user="bob", body={"credits": 50})
    bob = {**CREDITS, "user": {"id": "bob"}, "state": {"credits": 0, "pending": 50},
           "request": {**CREDITS["request"], "headers": {"X-Demo-User": "bob"}}}  # fmt: skip
    again = report(bob)

    assert again.pk == issue.pk and again.times_reopened == 1
    assert again.stage == Stage.MITIGATED  # mitigated for bob too, at once, by the learned pattern
    assert stages(again).count("mitigated") == 2 and stages(again)[-6] == "detected"
    assert demo_call("GET", "/demo/api/credits", user="bob").json() == {"credits": 50, "pending": 0}
    assert RemediationRun.objects.filter(action="webhook_call", user_id="bob", outcome="ok").exists()
    assert again.severity == again.base_severity  # a mitigation coming back is no failed fix
    assert set(Change.objects.filter(issue=issue).values_list("status", flat=True)) == {ChangeStatus.COMPLETE}


def test_only_a_fully_rolled_out_change_resolves(sandbox):
    demo_call("POST", "/demo/api/purchase", user="alice", body={"credits": 100})
    issue = report(CREDITS)
    change = Change.objects.get(issue=issue)

    outcomes.change_completed(change_id=change.pk)  # e.g. a late duplicate of the rollout's hook

    issue.refresh_from_db()
    assert issue.stage == Stage.MITIGATED  # mitigated is not "deployed": nothing to resolve from
