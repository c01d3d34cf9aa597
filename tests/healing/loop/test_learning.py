"""Learning: a resolved incident becomes (or strengthens) a pattern, so the next identical problem
is matched at once; a failed fix weakens its pattern until it switches itself off."""

import pytest

from flags.models import Override
from flags.services import flag_create
from healing.changes.lifecycle import PatchSpec, change_create
from healing.loop import patterns
from healing.loop.learning import LearningError, incident_fix_failed, incident_learn, plan_generalize
from healing.loop.patterns import pattern_match
from healing.models import AuditEntry, Change, ErrorPattern, Incident, IncidentOutcome, Issue
from healing.remediation import RemediationContext, remediation_plan_run
from tests.factories import IssueFactory, OccurrenceFactory, ProjectFactory

pytestmark = pytest.mark.django_db

FLAG = "checkout-retry"
REPORT = {
    "type": "ERROR",
    "message": "Checkout failed: card processor timed out after 30 s for order 1234",
    "route": "/checkout",
    "user": {"id": "alice"},
}


@pytest.fixture(autouse=True)
def empty_library():
    ErrorPattern.objects.all().delete()  # the seeded patterns would compete
    patterns.forget_patterns()
    yield
    patterns.forget_patterns()


@pytest.fixture
def learn(django_capture_on_commit_callbacks):
    """Learning (or failing) as the pipeline would: committed, so the library reloads."""

    def call(fn, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**kwargs)

    return call


@pytest.fixture
def report_issue(post_report, drain):
    """Ingest a native report; returns its issue."""

    def send(**overrides) -> Issue:
        answer = post_report({**REPORT, **overrides})
        assert answer.status_code == 202, answer.content
        drain()
        return Issue.objects.get(pk=answer.json()["issue_id"])

    return send


def completed_change(issue, *, plan=None, patch=None, **fields) -> Change:
    plan = [{"action": "flag_enable_for_user", "params": {"flag": FLAG, "user_id": "alice"}}] if plan is None else plan
    change = change_create(
        title="Retry the card processor", severity="P2", actor="kaizen", issue=issue, plan=plan, patch=patch,
        objective="The card processor times out under load; retry once.", **fields,
    )  # fmt: skip
    Change.objects.filter(pk=change.pk).update(status="complete")
    change.refresh_from_db()
    return change


# --- Learning from a fix -------------------------------------------------------------------------


def test_a_completed_fix_becomes_an_incident_and_a_pattern(report_issue, learn):
    issue = report_issue()
    change = completed_change(issue)
    incident = learn(incident_learn, change=change)

    assert (incident.issue, incident.change, incident.outcome) == (issue, change, IncidentOutcome.FIXED)
    assert incident.symptoms == "Checkout failed: card processor timed out after <int> s for order <int>"
    assert incident.root_cause == "The card processor times out under load; retry once."
    assert incident.fix_plan == change.plan
    pattern = incident.pattern
    assert (pattern.project, pattern.match_type, pattern.fingerprint) == (issue.project, "ERROR", issue.fingerprint)
    assert pattern.example_text == incident.symptoms
    # The affected user's id is dropped: the next report's user gets the fix.
    assert pattern.remediation == [{"action": "flag_enable_for_user", "params": {"flag": FLAG}}]
    assert (pattern.successes, pattern.failures, pattern.hits, pattern.enabled) == (1, 0, 0, True)
    assert pattern.name.startswith("Learned: ")
    assert AuditEntry.objects.filter(action="pattern.create", target=f"pattern:{pattern.pk}").exists()
    learned = AuditEntry.objects.get(action="incident.learn")
    assert learned.detail["pattern_created"] is True and learned.detail["change"] == change.key


def test_after_learning_the_same_problem_is_matched_at_once(report_issue, learn):
    first = report_issue()
    learned = learn(incident_learn, change=completed_change(first)).pattern

    # The same issue again (same fingerprint), reported by someone else.
    again = report_issue(
        message="Checkout failed: card processor timed out after 31 s for order 98", user={"id": "bob"}
    )
    assert again.pk == first.pk
    match = pattern_match(issue=again)
    assert match is not None and match.pattern == learned and match.fingerprint_matched
    assert match.confidence == 1.0 >= learned.confidence_threshold
    assert match.plan == learned.remediation

    # The same normalized message on another fingerprint (another route groups it apart).
    elsewhere = report_issue(
        route="/cart/checkout", message="Checkout failed: card processor timed out after 5 s for order 7"
    )
    assert elsewhere.fingerprint != first.fingerprint
    match = pattern_match(issue=elsewhere)
    assert match is not None and match.pattern == learned and not match.fingerprint_matched
    assert match.similarity == 1.0 and match.confidence >= learned.confidence_threshold
    assert match.plan == [{"action": "flag_enable_for_user", "params": {"flag": FLAG}}]


def test_a_learned_pattern_leaves_other_problems_and_other_projects_alone(report_issue, learn):
    learn(incident_learn, change=completed_change(report_issue()))
    assert pattern_match(issue=report_issue(message="Avatar upload rejected: file too large", route="/me")) is None
    other = IssueFactory(project=ProjectFactory(), type="ERROR", title=REPORT["message"])
    OccurrenceFactory(issue=other, message=REPORT["message"], payload=dict(REPORT))
    assert pattern_match(issue=other) is None  # a fix for one product is not applied to another


def test_the_second_user_is_fixed_by_the_learned_plan_without_the_first_ones_id(report_issue, learn, project):
    flag = flag_create(project=project, key=FLAG, enabled=True, actor="test")
    first = report_issue()
    learn(incident_learn, change=completed_change(first))
    second = report_issue(route="/pay", message="Checkout failed: card processor timed out after 9 s for order 55",
                          user={"id": "bob"})  # fmt: skip
    match = pattern_match(issue=second)
    report = remediation_plan_run(plan=match.plan, context=RemediationContext(issue=second, user_id="bob"),
                                  actor="kaizen")  # fmt: skip
    assert report.ok
    assert list(Override.objects.filter(flag=flag).values_list("user_id", "enabled")) == [("bob", True)]


def test_another_fix_with_the_same_plan_strengthens_the_pattern(report_issue, learn):
    issue = report_issue()
    pattern = learn(incident_learn, change=completed_change(issue)).pattern
    second = learn(incident_learn, change=completed_change(issue)).pattern
    assert second == pattern and ErrorPattern.objects.count() == 1
    pattern.refresh_from_db()
    assert pattern.successes == 2 and pattern.incidents.count() == 2


def test_a_different_fix_for_the_same_problem_is_a_pattern_of_its_own(report_issue, learn):
    issue = report_issue()
    learn(incident_learn, change=completed_change(issue))
    other_plan = [{"action": "flag_set_rollout", "params": {"flag": FLAG, "percentage": 100}}]
    learn(incident_learn, change=completed_change(issue, plan=other_plan))
    assert ErrorPattern.objects.count() == 2
    assert sorted(p.successes for p in ErrorPattern.objects.all()) == [1, 1]


def test_a_fix_from_an_existing_pattern_strengthens_that_pattern(report_issue, learn):
    owner_pattern = ErrorPattern.objects.create(
        name="Card processor timeouts", message_regex="card processor timed out", confidence_threshold=0.5,
        remediation=[{"action": "flag_enable_for_user", "params": {"flag": FLAG}}],
    )  # fmt: skip
    incident = learn(incident_learn, change=completed_change(report_issue()))
    assert incident.pattern == owner_pattern and ErrorPattern.objects.count() == 1
    owner_pattern.refresh_from_db()
    assert owner_pattern.successes == 1


def test_learning_is_idempotent_per_change(report_issue, learn):
    change = completed_change(report_issue())
    first = learn(incident_learn, change=change)
    assert learn(incident_learn, change=change) == first
    assert Incident.objects.count() == 1 and ErrorPattern.objects.get().successes == 1


def test_a_code_patch_is_recorded_but_not_learned_as_a_pattern(report_issue, learn):
    change = completed_change(report_issue(), plan=[], patch=PatchSpec(summary="Raise the timeout", diff="-1\n+5\n"))
    incident = learn(incident_learn, change=change)
    assert incident.pattern is None and incident.fix_summary == "Raise the timeout"
    assert not ErrorPattern.objects.exists()
    assert "code patch only" in AuditEntry.objects.get(action="incident.learn").detail["not_learned"]


def test_only_a_completed_change_linked_to_an_issue_is_learned_from(report_issue):
    issue = report_issue()
    draft = change_create(title="t", severity="P2", actor="kaizen", issue=issue)
    with pytest.raises(LearningError, match="draft: only a completed change"):
        incident_learn(change=draft)
    unlinked = completed_change(None)
    with pytest.raises(LearningError, match="not linked to an issue"):
        incident_learn(change=unlinked)
    with pytest.raises(LearningError, match="not linked to an issue"):
        incident_fix_failed(change=unlinked)


def test_resolved_incidents_become_examples_of_their_pattern(learn):
    project = ProjectFactory()
    pattern = ErrorPattern.objects.create(
        name="Card processor", project=project, match_type="ERROR", example_text="card processor timed out",
        remediation=[{"action": "flag_enable_for_user", "params": {"flag": FLAG}}], confidence_threshold=0.8,
    )  # fmt: skip
    wording = "Payment gateway returned HTTP 504 while charging"
    issue = IssueFactory(project=project, type="ERROR", title=wording)
    OccurrenceFactory(issue=issue, message=wording, payload={"message": wording})
    assert pattern_match(issue=issue) is None  # nothing like the example yet
    learn(incident_learn, change=completed_change(issue), pattern=pattern)
    fresh = IssueFactory(project=project, type="ERROR", title=wording)
    OccurrenceFactory(issue=fresh, message="Payment gateway returned HTTP 502 while charging",
                      payload={"message": "Payment gateway returned HTTP 502 while charging"})  # fmt: skip
    match = pattern_match(issue=fresh)
    assert match is not None and match.pattern == pattern and match.similarity == 1.0


# --- A fix that failed ---------------------------------------------------------------------------


def test_a_failed_fix_weakens_its_pattern(report_issue, learn):
    issue = report_issue()
    pattern = learn(incident_learn, change=completed_change(issue)).pattern
    failed = completed_change(issue)
    Change.objects.filter(pk=failed.pk).update(status="aborted")
    incident = learn(incident_fix_failed, change=failed)
    assert (incident.outcome, incident.pattern) == (IncidentOutcome.FIX_FAILED, pattern)
    pattern.refresh_from_db()
    assert (pattern.successes, pattern.failures, pattern.enabled) == (1, 1, True)
    assert learn(incident_fix_failed, change=failed) == incident  # once per change
    pattern.refresh_from_db()
    assert pattern.failures == 1


def test_a_pattern_whose_learned_fix_keeps_failing_switches_itself_off(report_issue, learn):
    issue = report_issue()
    pattern = learn(incident_learn, change=completed_change(issue)).pattern
    for _ in range(3):
        learn(incident_fix_failed, change=completed_change(issue))
    pattern.refresh_from_db()
    assert (pattern.enabled, pattern.auto_disabled, pattern.failures) == (False, True, 3)
    assert AuditEntry.objects.filter(action="owner.alert", target=f"pattern:{pattern.pk}").exists()
    assert pattern_match(issue=issue) is None
    # Still found, though disabled, so later failures keep counting against it.
    learn(incident_fix_failed, change=completed_change(issue))
    pattern.refresh_from_db()
    assert pattern.failures == 4


def test_a_fix_that_regressed_after_learning_flips_its_incident(report_issue, learn):
    pattern = ErrorPattern.objects.create(
        name="Card processor", match_type="ERROR", example_text="card processor is slow",
        remediation=[{"action": "flag_enable_for_user", "params": {"flag": FLAG}}],
    )  # fmt: skip
    change = completed_change(report_issue())
    incident = learn(incident_learn, change=change, pattern=pattern)
    assert len(patterns.active_library().patterns[0].examples) == 2  # the example line and the incident
    flipped = learn(incident_fix_failed, change=change)
    assert flipped.pk == incident.pk and flipped.outcome == IncidentOutcome.FIX_FAILED
    assert flipped.pattern == pattern and Incident.objects.count() == 1
    pattern.refresh_from_db()
    assert (pattern.successes, pattern.failures) == (1, 1)
    # Its symptoms no longer count as an example of a fix that works.
    assert len(patterns.active_library().patterns[0].examples) == 1


def test_plan_generalize_drops_only_the_affected_users_ids():
    plan = [
        {"action": "flag_enable_for_user", "params": {"flag": "a", "user_id": "alice"}},
        {"action": "flag_enable_for_user", "params": {"flag": "a", "user_id": "qa-bot"}},
        {"action": "flag_kill", "params": {"flag": "a"}},
    ]
    assert plan_generalize(plan, users={"alice"}) == [
        {"action": "flag_enable_for_user", "params": {"flag": "a"}},
        {"action": "flag_enable_for_user", "params": {"flag": "a", "user_id": "qa-bot"}},
        {"action": "flag_kill", "params": {"flag": "a"}},
    ]
