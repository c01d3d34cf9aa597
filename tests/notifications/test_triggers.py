"""The places that alert the owner go through the seam: a new P0/P1 issue, an escalation, a
pattern that switched itself off."""

import pytest

from healing.loop import pipeline
from healing.loop.patterns import pattern_record_outcome
from healing.models import AuditEntry, ErrorPattern
from notifications.models import Notification
from tests.factories import IssueFactory, OccurrenceFactory

pytestmark = pytest.mark.django_db


def test_a_new_p0_issue_alerts_the_owner_and_so_does_its_escalation(channels):
    issue = IssueFactory(severity="P0", stage="detected", title="Payments fail", affected_users=7, occurrence_count=9)

    pipeline.issue_process(issue_id=str(issue.pk))

    alerts = {n.kind: n for n in Notification.objects.filter(target=f"issue:{issue.pk}")}
    detected = alerts["issue_detected"]
    assert (detected.severity, detected.title, detected.body) == ("P0", "Payments fail", "7 users, 9 reports.")
    assert detected.dedupe_key == f"issue:{issue.pk}:detected"
    issue.refresh_from_db()
    escalated = alerts["auto_fix_failed"]
    assert (escalated.severity, escalated.dedupe_key) == ("P0", f"issue:{issue.pk}:{issue.stage}")
    audited = AuditEntry.objects.filter(action="owner.alert", target=f"issue:{issue.pk}")
    assert sorted(entry.detail["event"] for entry in audited) == ["auto_fix_failed", "issue_detected"]


def test_a_minor_issue_alerts_nobody_at_detection(channels):
    issue = IssueFactory(severity="P3", stage="detected")
    pipeline.issue_process(issue_id=str(issue.pk))
    assert not Notification.objects.filter(kind="issue_detected").exists()


def test_a_pattern_that_switches_itself_off_alerts_the_owner(channels):
    pattern = ErrorPattern.objects.create(name="Flaky fix", message_regex="flaky", successes=0, failures=2)
    pattern_record_outcome(pattern=pattern, success=False)

    alert = Notification.objects.get(target=f"pattern:{pattern.pk}")
    assert (alert.kind, alert.severity, alert.title) == (
        "system_alert",
        "P2",
        'Pattern "Flaky fix" switched itself off',
    )
    assert "Re-enable it in the console" in alert.body


def test_a_help_button_report_alerts_the_owner_with_the_users_words(channels):
    issue = IssueFactory(type="USER_REPORTED", severity="P2", stage="detected", title="Help button report")
    OccurrenceFactory(issue=issue, payload={"message": "Help button report", "description": "Export hangs at 90%"})

    pipeline.issue_process(issue_id=str(issue.pk))

    (alert,) = Notification.objects.filter(target=f"issue:{issue.pk}", kind="help_request")
    assert (alert.severity, alert.body, alert.dedupe_key) == ("P2", "Export hangs at 90%", f"issue:{issue.pk}:help")
    assert not Notification.objects.filter(target=f"issue:{issue.pk}", kind="issue_detected").exists()
