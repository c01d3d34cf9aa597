import pytest

from healing.ingest import classify
from healing.models import ClassificationRule


def run(report, project_id=1):
    rules = classify.active_rules()
    return classify.classify(report={"type": "ERROR", **report}, project_id=project_id, rules=rules)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"message": "I paid for 100 credits but my balance still shows 0"}, ("BILLING_ISSUE", "P0")),
        (
            {"type": "USER_REPORTED", "message": "help", "description": "Payment went through, credits not showing"},
            ("BILLING_ISSUE", "P0"),
        ),
        ({"message": "All my work was deleted after saving", "type": "USER_REPORTED"}, ("DATA_INCONSISTENCY", "P0")),
        ({"type": "USER_REPORTED", "message": "I can't use the app at all"}, ("USER_REPORTED", "P0")),
        ({"type": "ERROR", "message": "Session expired right after login"}, ("AUTH_ISSUE", "P1")),
        ({"type": "BILLING_ISSUE", "message": "Invoice PDF looks odd"}, ("BILLING_ISSUE", "P1")),
        (
            {"type": "ERROR", "message": "boom", "request": {"method": "POST", "path": "/x", "status": 502}},
            ("ERROR", "P1"),
        ),
        ({"type": "SILENT_FAILURE", "message": "Generate did nothing"}, ("SILENT_FAILURE", "P1")),
        ({"type": "ERROR", "message": "TypeError in render"}, ("ERROR", "P2")),
        ({"type": "SLOW_RESPONSE", "message": "GET /dashboard took 4 s"}, ("SLOW_RESPONSE", "P2")),
        ({"type": "UX_CONFUSION", "message": "Rage clicks on Save"}, ("UX_CONFUSION", "P3")),
    ],
)
def test_default_rules(report, expected):
    result = run(report)
    assert (result.type, result.severity) == expected


@pytest.mark.django_db
def test_first_matching_rule_by_priority_wins_and_owner_edits_apply():
    assert run({"type": "UX_CONFUSION", "message": "Rage clicks on Save"}).severity == "P3"
    ClassificationRule.objects.create(name="Save is critical", priority=1, message_regex=r"\bsave\b", severity="P1")
    classify.forget_rules()
    result = run({"type": "UX_CONFUSION", "message": "Rage clicks on Save"})
    assert (result.type, result.severity) == ("UX_CONFUSION", "P1")


@pytest.mark.django_db
def test_disabled_and_other_project_rules_are_skipped():
    ClassificationRule.objects.create(name="off", priority=1, message_regex="boom", severity="P0", enabled=False)
    ClassificationRule.objects.create(name="global", priority=2, message_regex="boom", severity="P0", project_id=None)
    classify.forget_rules()
    assert run({"message": "boom"}).severity == "P0"  # the enabled global rule applies
    ClassificationRule.objects.filter(name="global").delete()
    from tests.factories import ProjectFactory

    other = ProjectFactory()
    ClassificationRule.objects.create(
        name="other project", priority=2, message_regex="boom", severity="P0", project=other
    )
    classify.forget_rules()
    assert run({"message": "boom"}, project_id=other.id + 1000).severity == "P2"
    assert run({"message": "boom"}, project_id=other.id).severity == "P0"


@pytest.mark.django_db
def test_status_range_needs_a_failing_request():
    assert run({"message": "boom"}).severity == "P2"
    assert run({"message": "boom", "request": {"method": "GET", "path": "/", "status": 404}}).severity == "P2"


def test_escalation_with_users_and_recurrence():
    rule = classify.CompiledRule(
        id=1, project_id=None, match_type="", message=None, route=None, exception=None, status_min=None,
        status_max=None, result_type="", severity="P2", escalate_users=10, escalate_occurrences=100,
    )  # fmt: skip
    assert classify.escalated_severity(base="P2", rule=rule, affected_users=9, occurrences=99) == "P2"
    assert classify.escalated_severity(base="P2", rule=rule, affected_users=10, occurrences=1) == "P1"
    assert classify.escalated_severity(base="P2", rule=rule, affected_users=10, occurrences=100) == "P0"
    assert classify.escalated_severity(base="P1", rule=rule, affected_users=50, occurrences=500) == "P0"  # capped
    assert classify.escalated_severity(base="P3", rule=None, affected_users=10**6, occurrences=10**6) == "P3"


@pytest.mark.django_db
def test_invalid_regex_is_refused_by_validation():
    from django.core.exceptions import ValidationError

    rule = ClassificationRule(name="bad", message_regex="(unclosed", severity="P1")
    with pytest.raises(ValidationError, match="regular expression"):
        rule.full_clean()
