"""The error-pattern library: structural conditions, text similarity, thresholds, counting,
self-disabling after repeated failures, the seeded demo patterns, and the console's pages."""

import importlib
import logging

import pytest
from django.apps import apps

from healing.loop import patterns
from healing.loop.patterns import (
    cosine,
    pattern_enable,
    pattern_match,
    pattern_record_outcome,
    symptoms_text,
    text_index_build,
)
from healing.models import AuditEntry, ErrorPattern, Issue
from healing.remediation import remediation_plan_validate
from tests.factories import IssueFactory, OccurrenceFactory, ProjectFactory

pytestmark = pytest.mark.django_db

PLAN = [{"action": "flag_enable_for_user", "params": {"flag": "checkout-fix"}}]


@pytest.fixture(autouse=True)
def empty_library():
    """Each test builds the library it needs: the seeded patterns would otherwise compete."""
    ErrorPattern.objects.all().delete()
    patterns.forget_patterns()
    yield
    patterns.forget_patterns()


def new_pattern(**fields) -> ErrorPattern:
    values = {"name": "Checkout times out", "remediation": PLAN, "confidence_threshold": 0.75, **fields}
    pattern = ErrorPattern(**values)
    pattern.full_clean()
    pattern.save()
    patterns.forget_patterns()
    return pattern


def reported(*, type: str = "ERROR", project=None, fingerprint: str | None = None, **report):
    """An issue with one occurrence carrying `report` (a native report)."""
    issue_fields = {"type": type, "title": report.get("message", "Problem")}
    if project is not None:
        issue_fields["project"] = project
    if fingerprint is not None:
        issue_fields["fingerprint"] = fingerprint
    issue = IssueFactory(**issue_fields)
    payload = {"message": "Problem", "type": type, **report}
    OccurrenceFactory(issue=issue, message=payload["message"], payload=payload, route=payload.get("route") or "")
    return issue


# --- Structural conditions -------------------------------------------------------------------


def test_conditions_alone_score_by_how_much_they_narrow_down():
    # type (0.2) and message regex (0.5), no examples: 1 − 0.8 × 0.5 = 0.6
    pattern = new_pattern(match_type="AUTH_ISSUE", message_regex=r"token expired", confidence_threshold=0.6)
    match = pattern_match(issue=reported(type="AUTH_ISSUE", message="Login failed: TOKEN EXPIRED"))
    assert match is not None
    assert (match.pattern, match.confidence, match.structure, match.similarity) == (pattern, 0.6, 0.6, 0.0)
    assert match.plan == PLAN


def test_every_filled_condition_must_hold():
    new_pattern(
        match_type="ERROR", exception_regex=r"^TimeoutError$", route_regex=r"^/checkout", confidence_threshold=0
    )
    exception = {"type": "TimeoutError", "value": "took too long"}
    assert pattern_match(issue=reported(route="/checkout/pay", exception=exception)) is not None
    assert pattern_match(issue=reported(type="SLOW_RESPONSE", route="/checkout/pay", exception=exception)) is None
    assert pattern_match(issue=reported(route="/cart", exception=exception)) is None
    assert pattern_match(issue=reported(route="/checkout/pay", exception={"type": "ValueError"})) is None
    assert pattern_match(issue=reported(route="/checkout/pay")) is None  # no exception at all


def test_route_is_searched_in_the_url_and_the_failing_request_too():
    new_pattern(route_regex=r"/generate\b", confidence_threshold=0.3)
    spa = reported(route="/app/", request={"method": "POST", "path": "/app/api/generate", "status": 202})
    assert pattern_match(issue=spa) is not None
    assert pattern_match(issue=reported(url="https://shop.example.com/generate?x=1")) is not None
    assert (
        pattern_match(issue=reported(route="/app/", request={"method": "POST", "path": "/app/api/generated"})) is None
    )


def test_message_regex_reads_the_exception_value_and_the_users_words():
    new_pattern(message_regex=r"quota exceeded", confidence_threshold=0.5)
    assert pattern_match(issue=reported(message="Oops", exception={"type": "E", "value": "Quota exceeded"})) is not None
    assert pattern_match(issue=reported(message="Help", description="it says quota exceeded")) is not None
    assert pattern_match(issue=reported(message="Oops")) is None


def test_a_project_pattern_stays_in_its_project_and_a_global_one_applies_everywhere():
    mine, other = ProjectFactory(), ProjectFactory()
    new_pattern(project=mine, message_regex="disk full", confidence_threshold=0.5)
    assert pattern_match(issue=reported(project=mine, message="disk full")) is not None
    assert pattern_match(issue=reported(project=other, message="disk full")) is None
    new_pattern(name="Global", message_regex="disk full", confidence_threshold=0.5)
    assert pattern_match(issue=reported(project=other, message="disk full")).pattern.name == "Global"


def test_on_a_tie_the_projects_own_pattern_wins_over_a_global_one():
    project = ProjectFactory()
    new_pattern(name="Global", message_regex="disk full", confidence_threshold=0.5)
    new_pattern(name="Ours", project=project, message_regex="disk full", confidence_threshold=0.5)
    assert pattern_match(issue=reported(project=project, message="disk full")).pattern.name == "Ours"


def test_the_exact_fingerprint_is_certain_whatever_the_text_says():
    issue = reported(message="Something else entirely", fingerprint="f" * 64)
    new_pattern(fingerprint="f" * 64, example_text="Checkout timed out", confidence_threshold=0.99)
    match = pattern_match(issue=issue)
    assert (match.confidence, match.fingerprint_matched) == (1.0, True)
    # Another fingerprint is no evidence against: it just is not evidence for.
    assert pattern_match(issue=reported(message="Something else entirely", fingerprint="e" * 64)) is None


def test_a_pattern_needs_a_condition_or_evidence():
    with pytest.raises(Exception, match="at least one condition"):
        new_pattern()
    with pytest.raises(Exception, match="regular expression"):
        new_pattern(message_regex="(unclosed")


# --- Text similarity ---------------------------------------------------------------------------


def test_symptoms_are_normalized_so_ids_and_numbers_do_not_count():
    report = {"message": "Order 1234 for bob@example.com failed", "exception": {"type": "PaymentError", "value": "x"}}
    assert symptoms_text(report) == "PaymentError Order <int> for <email> failed x"


def test_cosine_of_the_same_text_is_one_and_of_disjoint_texts_zero():
    index = text_index_build(["checkout timed out", "session expired"])
    same = index.vector("checkout timed out")
    assert cosine(same, index.vector("checkout timed out")) == pytest.approx(1.0)
    assert cosine(index.vector("abc"), index.vector("xyz")) == 0.0
    assert index.vector("") == {}


def test_near_identical_messages_match_and_unrelated_ones_do_not():
    new_pattern(match_type="BILLING_ISSUE", example_text="Payment received but credits not showing for order 123")
    near = reported(type="BILLING_ISSUE", message="Payment received but credits not shown for order 98765")
    match = pattern_match(issue=near)
    assert match is not None and match.similarity > 0.6 and match.confidence >= 0.75
    unrelated = reported(type="BILLING_ISSUE", message="Invoice PDF download returns a blank page")
    assert pattern_match(issue=unrelated) is None


def test_every_example_line_counts_and_the_closest_decides():
    new_pattern(example_text="Checkout spinner never stops\nPayment page hangs forever", confidence_threshold=0.7)
    assert pattern_match(issue=reported(message="The payment page hangs forever")) is not None
    assert pattern_match(issue=reported(message="Avatar upload rejected")) is None


# --- Thresholds, counting, the cache -----------------------------------------------------------


def test_the_threshold_decides():
    pattern = new_pattern(match_type="AUTH_ISSUE", message_regex="expired", confidence_threshold=0.61)
    issue = reported(type="AUTH_ISSUE", message="session expired")
    assert pattern_match(issue=issue) is None  # 0.6 < 0.61
    ErrorPattern.objects.filter(pk=pattern.pk).update(confidence_threshold=0.6)
    patterns.forget_patterns()
    assert pattern_match(issue=issue).confidence == 0.6


def test_the_most_confident_pattern_wins():
    new_pattern(name="Loose", message_regex="checkout", confidence_threshold=0.1)
    new_pattern(name="Close", example_text="checkout timed out after 30 seconds", confidence_threshold=0.1)
    assert pattern_match(issue=reported(message="Checkout timed out after 31 seconds")).pattern.name == "Close"


def test_a_match_is_counted_and_audited():
    pattern = new_pattern(message_regex="disk full", confidence_threshold=0.5)
    issue = reported(message="disk full")
    pattern_match(issue=issue)
    pattern_match(issue=issue)
    pattern.refresh_from_db()
    assert pattern.hits == 2 and pattern.last_used_at is not None
    entry = AuditEntry.objects.filter(action="pattern.match").first()
    assert entry.target == f"pattern:{pattern.pk}" and entry.detail["issue"] == str(issue.pk)


def test_a_pattern_disabled_after_the_library_was_cached_is_not_used():
    pattern = new_pattern(message_regex="disk full", confidence_threshold=0.5)
    issue = reported(message="disk full")
    assert pattern_match(issue=issue) is not None  # the library is cached now
    ErrorPattern.objects.filter(pk=pattern.pk).update(enabled=False)
    assert pattern_match(issue=issue) is None
    assert ErrorPattern.objects.get(pk=pattern.pk).hits == 1


def test_the_latest_occurrence_is_used_when_none_is_given():
    new_pattern(message_regex="second", confidence_threshold=0.5)
    issue = reported(message="first")
    assert pattern_match(issue=issue) is None
    OccurrenceFactory(issue=issue, message="second", payload={"message": "second"})
    assert pattern_match(issue=issue) is not None


# --- Outcomes and self-disabling ---------------------------------------------------------------


def test_outcomes_are_counted():
    pattern = new_pattern(message_regex="x")
    pattern_record_outcome(pattern=pattern, success=True)
    pattern_record_outcome(pattern=pattern, success=False)
    pattern.refresh_from_db()
    assert (pattern.successes, pattern.failures, pattern.enabled) == (1, 1, True)


def test_a_pattern_whose_fixes_keep_failing_disables_itself_and_tells_the_owner(caplog):
    pattern = new_pattern(name="Flaky fix", message_regex="disk full", confidence_threshold=0.5)
    issue = reported(message="disk full")
    for _ in range(2):
        pattern_record_outcome(pattern=pattern, success=False)
    assert ErrorPattern.objects.get(pk=pattern.pk).enabled  # two failures are not yet a trend
    with caplog.at_level(logging.WARNING, logger="kaizen.patterns"):
        pattern_record_outcome(pattern=pattern, success=False)
    pattern.refresh_from_db()
    assert (pattern.enabled, pattern.auto_disabled, pattern.failures) == (False, True, 3)
    assert "3 of 3 fixes failed" in pattern.disabled_reason
    alert = AuditEntry.objects.get(action="owner.alert")
    assert alert.target == f"pattern:{pattern.pk}" and "Flaky fix" in alert.detail["message"]
    assert AuditEntry.objects.filter(action="pattern.disable", target=f"pattern:{pattern.pk}").exists()
    assert any("Flaky fix" in record.getMessage() for record in caplog.records)
    patterns.forget_patterns()
    assert pattern_match(issue=issue) is None


def test_failures_at_half_or_less_of_the_outcomes_keep_it_enabled():
    pattern = new_pattern(message_regex="x")
    for success in (True, True, True, False, False, False):
        pattern_record_outcome(pattern=pattern, success=success)
    assert ErrorPattern.objects.get(pk=pattern.pk).enabled  # 3 of 6: not more than half
    pattern_record_outcome(pattern=pattern, success=False)
    assert not ErrorPattern.objects.get(pk=pattern.pk).enabled  # 4 of 7
    assert AuditEntry.objects.filter(action="owner.alert").count() == 1
    pattern_record_outcome(pattern=pattern, success=False)  # already off: no second alert
    assert AuditEntry.objects.filter(action="owner.alert").count() == 1


def test_reenabling_starts_the_counts_again():
    pattern = new_pattern(message_regex="x")
    for _ in range(3):
        pattern_record_outcome(pattern=pattern, success=False)
    pattern_enable(pattern=pattern, actor="alice")
    pattern.refresh_from_db()
    assert (pattern.enabled, pattern.auto_disabled, pattern.disabled_reason, pattern.failures) == (True, False, "", 0)
    entry = AuditEntry.objects.get(action="pattern.enable")
    assert entry.actor == "alice" and entry.detail["before"]["failures"] == 3


# --- The seeded demo patterns ------------------------------------------------------------------


@pytest.fixture
def seeded():
    importlib.import_module("healing.migrations.0004_patterns_remediation").seed(apps, None)
    patterns.forget_patterns()


DEMO_REPORTS = [
    (
        {"type": "SILENT_FAILURE", "message": "Clicked Generate and nothing happened", "route": "/demo/",
         "request": {"method": "POST", "path": "/demo/api/generate", "status": 202}},
        {"action": "flag_enable_for_user", "params": {"flag": "generate-retry"}},
    ),
    (
        {"type": "BILLING_ISSUE", "message": "I paid for 100 credits but my balance still shows 0", "route": "/demo/",
         "request": {"method": "GET", "path": "/demo/api/credits", "status": 200}},
        {"action": "webhook_call", "params": {"hook": "resync-credits"}},
    ),
    (
        {"type": "AUTH_ISSUE", "message": "Session expired right after login", "route": "/demo/",
         "request": {"method": "GET", "path": "/demo/api/me", "status": 401}},
        {"action": "flag_enable_for_user", "params": {"flag": "session-refresh-fix"}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("report", "step"), DEMO_REPORTS, ids=["generate", "credits", "session"])
def test_the_demo_scenarios_are_fixed_at_once_by_the_seeded_patterns(seeded, post_report, drain, report, step):
    answer = post_report({**report, "user": {"id": "alice"}})
    assert answer.status_code == 202, answer.content
    drain()
    issue = Issue.objects.get(pk=answer.json()["issue_id"])
    match = pattern_match(issue=issue)
    assert match is not None and match.confidence >= match.pattern.confidence_threshold
    assert match.plan == [step]


def test_the_seeded_patterns_leave_other_problems_alone(seeded):
    assert ErrorPattern.objects.count() == 3
    slow = reported(
        type="SILENT_FAILURE",
        message="Upload button spins forever",
        request={"method": "POST", "path": "/api/generate"},
    )
    invoice = reported(type="BILLING_ISSUE", message="Invoice PDF is blank")
    assert pattern_match(issue=slow) is None
    assert pattern_match(issue=invoice) is None


def test_the_seeded_plans_are_valid(seeded):
    for pattern in ErrorPattern.objects.all():
        remediation_plan_validate(pattern.remediation)


# --- The console -------------------------------------------------------------------------------


def test_console_lists_patterns_with_their_record(admin_client):
    pattern = new_pattern(message_regex="x")
    ErrorPattern.objects.filter(pk=pattern.pk).update(hits=7, successes=3, failures=1)
    page = admin_client.get("/admin/healing/errorpattern/").content.decode()
    assert "Checkout times out" in page and "75%" in page


def test_console_reenables_a_disabled_pattern(admin_client):
    pattern = new_pattern(message_regex="x")
    for _ in range(3):
        pattern_record_outcome(pattern=pattern, success=False)
    response = admin_client.post(
        "/admin/healing/errorpattern/", {"action": "reenable", "_selected_action": [pattern.pk]}
    )
    assert response.status_code == 302
    pattern.refresh_from_db()
    assert pattern.enabled and not pattern.auto_disabled
    assert AuditEntry.objects.get(action="pattern.enable").actor == "admin"


def test_console_refuses_a_plan_it_could_not_run(admin_client):
    data = {
        "name": "Bad", "message_regex": "x", "confidence_threshold": "0.75", "enabled": "on",
        "remediation": '[{"action": "flag_nuke", "params": {}}]',
    }  # fmt: skip
    page = admin_client.post("/admin/healing/errorpattern/add/", data).content.decode()
    assert "unknown action" in page and "flag_nuke" in page
    assert not ErrorPattern.objects.exists()
    data["remediation"] = '[{"action": "flag_enable_for_user", "params": {"flag": "x"}}]'
    assert admin_client.post("/admin/healing/errorpattern/add/", data).status_code == 302
    created = ErrorPattern.objects.get()
    assert created.created_by == "admin"
    assert AuditEntry.objects.filter(action="pattern.create", target=f"pattern:{created.pk}").exists()
