"""Accepted reports end up stored, grouped, classified, counted exactly and routed by severity."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.utils import timezone

from healing.ingest import store
from healing.loop import pipeline
from healing.models import EnqueueState, Issue, IssueEvent, IssueUser, Occurrence, Stage
from tests.factories import ProjectKeyFactory

SILENT = {"type": "SILENT_FAILURE", "message": "Generate did nothing", "route": "/generate"}


@pytest.fixture(
    params=[
        pytest.param("stream", marks=pytest.mark.django_db),
        # Direct mode enqueues after its commit: it needs real commits to reach the broker.
        pytest.param("direct", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def mode(request, settings):
    """Run the test on both durability paths."""
    settings.KAIZEN_INGEST_MODE = request.param
    return request.param


def test_report_is_stored_with_everything_the_client_sent(mode, post_report, drain):
    payload = {
        **SILENT,
        "user": {"id": "u1", "email": "u1@example.com"},
        "session_id": "s-1",
        "url": "https://app.example.com/generate?x=1",
        "release": "1.4.0",
        "environment": "production",
        "timestamp": "2026-11-21T10:00:00Z",
        "timeline": [{"action": "click", "target": "button#generate"}],
        "request": {
            "method": "POST",
            "path": "/api/generate",
            "body": {"prompt": "hi"},
            "status": 429,
            "duration_ms": 80.5,
        },
        "state": {"credits": 10},
        "description": "I clicked and nothing happened",
    }
    response = post_report(payload)
    assert response.status_code == 202
    body = response.json()
    assert body["stage"] == ("received" if mode == "stream" else "detected")
    drain()
    occurrence = Occurrence.objects.get()
    assert str(occurrence.event_id) == body["event_id"]
    assert str(occurrence.issue_id) == body["issue_id"]
    assert (occurrence.user_id, occurrence.user_email, occurrence.session_id) == ("u1", "u1@example.com", "s-1")
    assert (occurrence.release, occurrence.environment, occurrence.route) == ("1.4.0", "production", "/generate")
    assert occurrence.timestamp == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert occurrence.payload["request"]["body"] == {"prompt": "hi"}
    assert occurrence.payload["timeline"][0]["target"] == "button#generate"
    issue = Issue.objects.get()
    assert (issue.type, issue.severity, issue.stage, issue.title) == (
        "SILENT_FAILURE",
        "P1",
        "detected",
        "Generate did nothing",
    )
    assert issue.first_seen == issue.last_seen == occurrence.received_at


def test_repeats_group_into_one_issue_with_exact_counts(mode, post_report, drain):
    for n in range(5):
        post_report({**SILENT, "message": f"Generate did nothing for user {n}", "user": {"id": f"u{n % 3}"}})
    drain()
    issue = Issue.objects.get()
    assert (issue.occurrence_count, issue.affected_users) == (5, 3)
    assert issue.last_seen >= issue.first_seen


def test_resending_the_same_event_id_is_stored_once(mode, post_report, drain):
    event_id = str(uuid.uuid4())
    for _ in range(3):
        assert post_report({**SILENT, "event_id": event_id}).status_code == 202
    drain()
    assert Occurrence.objects.count() == 1
    assert Issue.objects.get().occurrence_count == 1


def test_severity_escalates_with_affected_users(mode, post_report, drain, broker):
    # "Login or session failing" is P1 and escalates at 10 users.
    for n in range(9):
        post_report({"type": "AUTH_ISSUE", "message": "Session expired right after login", "user": {"id": f"u{n}"}})
    drain()
    assert Issue.objects.get().severity == "P1"
    post_report({"type": "AUTH_ISSUE", "message": "Session expired right after login", "user": {"id": "u9"}})
    drain()
    issue = Issue.objects.get()
    assert (issue.severity, issue.base_severity, issue.affected_users) == ("P0", "P1", 10)
    assert broker.llen("P0") == 1  # re-routed to the critical queue once escalated


def test_a_later_more_severe_report_raises_the_issue(mode, post_report, drain):
    post_report({"message": "Credits page", "fingerprint": ["billing"], "type": "BILLING_ISSUE"})
    drain()
    assert Issue.objects.get().severity == "P1"
    post_report({"message": "I paid but my credits are missing", "fingerprint": ["billing"], "type": "BILLING_ISSUE"})
    drain()
    assert Issue.objects.get().severity == "P0"


def test_resolved_issue_reopens_on_a_new_occurrence(mode, post_report, drain, broker):
    post_report(SILENT)
    drain()
    Issue.objects.update(stage=Stage.RESOLVED, resolved_at=timezone.now(), enqueue_state=EnqueueState.SENT)
    broker.delete("P1")
    post_report(SILENT)
    drain()
    issue = Issue.objects.get()
    assert (issue.stage, issue.times_reopened, issue.resolved_at) == (Stage.DETECTED, 1, None)
    assert broker.llen("P1") == 1


def test_issues_are_routed_to_their_severity_queue_on_the_broker(
    mode, post_report, drain, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # a P0 is written and published at the door
        post_report({"message": "I paid for credits but they are missing"})  # P0
    post_report({"type": "SILENT_FAILURE", "message": "Export did nothing"})  # P1
    post_report({"type": "SLOW_RESPONSE", "message": "Dashboard slow"})  # P2
    post_report({"type": "UX_CONFUSION", "message": "Rage clicks"})  # P3
    post_report({"type": "UX_CONFUSION", "message": "Rage clicks"})  # a repeat enqueues nothing new
    drain()
    assert [broker.llen(q) for q in ("P0", "P1", "P2", "P3")] == [1, 1, 1, 1]
    assert set(Issue.objects.values_list("enqueue_state", flat=True)) == {EnqueueState.SENT}
    import json

    message = json.loads(broker.lindex("P0", 0))
    assert message["headers"]["task"] == "healing.tasks.process_issue"
    assert message["headers"]["argsrepr"] == repr([str(Issue.objects.get(severity="P0").id)])


def test_projects_never_share_issues(mode, client, drain):
    a, b = ProjectKeyFactory(), ProjectKeyFactory()
    for key in (a, b):
        response = client.post(
            "/api/v1/issues", data=SILENT, content_type="application/json", HTTP_X_KAIZEN_KEY=key.public_key
        )
        assert response.status_code == 202
    drain()
    assert Issue.objects.filter(project=a.project).count() == 1
    assert Issue.objects.filter(project=b.project).count() == 1
    assert Issue.objects.get(project=a.project).id != Issue.objects.get(project=b.project).id


def test_a_project_key_cannot_report_as_another_project(client, db, drain):
    a, b = ProjectKeyFactory(), ProjectKeyFactory()
    response = client.post(
        f"/api/v1/issues?key={a.public_key}",
        data=SILENT,
        content_type="application/json",
        HTTP_X_KAIZEN_KEY=b.public_key,
    )
    assert response.status_code == 202  # the header wins; the report belongs to b only
    drain()
    assert Issue.objects.get().project == b.project


def test_process_issue_records_detection_once(mode, post_report, drain):
    from healing.models import Severity

    post_report({"type": "UX_CONFUSION", "message": "Rage clicks on Save"})  # P3: healed in the daily batch
    drain()
    issue = Issue.objects.get()
    assert issue.severity == Severity.P3
    assert pipeline.issue_process(issue_id=str(issue.id)) is True
    assert pipeline.issue_process(issue_id=str(issue.id)) is False  # a redelivered task does nothing
    event = IssueEvent.objects.get()
    # The user is told in the words of the owner's template for this stage and type (healing.messages).
    assert (event.stage, event.message) == (
        Stage.DETECTED,
        "Looks like this isn't doing what you expected. We've noticed and are taking a look.",
    )


def test_store_batches_mixed_projects_and_duplicates(db):
    from healing.ingest.accept import record_build
    from healing.projects import project_for_key

    a, b = ProjectKeyFactory(), ProjectKeyFactory()
    auth_a, auth_b = project_for_key(a.public_key), project_for_key(b.public_key)
    records = [
        record_build(project=auth_a if n % 2 else auth_b, report={**SILENT, "user": {"id": str(n)}}, source="native")
        for n in range(10)
    ]
    result = store.reports_store(records=records + records[:3])
    assert (result.stored, result.duplicates) == (10, 3)
    assert sorted(Issue.objects.values_list("occurrence_count", "affected_users")) == [(5, 5), (5, 5)]
    again = store.reports_store(records=records)
    assert (again.stored, again.duplicates, again.to_enqueue) == (0, 10, {})
    assert sorted(Issue.objects.values_list("occurrence_count", flat=True)) == [5, 5]


def test_a_severity_the_owner_pinned_is_kept(mode, post_report, drain):
    for n in range(3):
        post_report({"type": "AUTH_ISSUE", "message": "Session expired right after login", "user": {"id": f"u{n}"}})
    drain()
    Issue.objects.update(severity="P3", severity_pinned=True)
    for n in range(3, 12):  # enough users to escalate an unpinned issue to P0
        post_report({"type": "AUTH_ISSUE", "message": "Session expired right after login", "user": {"id": f"u{n}"}})
    drain()
    issue = Issue.objects.get()
    assert (issue.severity, issue.affected_users) == ("P3", 12)


def test_old_occurrences_are_trimmed_but_counts_stay_exact(db, post_report, drain):
    from healing.ingest import retention

    for n in range(7):
        post_report({**SILENT, "user": {"id": f"u{n}"}})
    drain()
    newest = list(Occurrence.objects.order_by("-id").values_list("id", flat=True)[:3])
    assert retention.occurrences_trim(keep=3) == 4
    assert sorted(Occurrence.objects.values_list("id", flat=True), reverse=True) == newest
    assert Issue.objects.get().occurrence_count == 7


@pytest.mark.parametrize(
    "origins", [["https://a.example.com/path"], ["a.example.com"], ["ftp://a.example.com"], "x", [1]]
)
def test_project_origins_must_be_bare_origins(db, origins):
    from django.core.exceptions import ValidationError

    from tests.factories import ProjectFactory

    project = ProjectFactory.build(allowed_origins=origins)
    with pytest.raises(ValidationError):
        project.full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Occurrence, Issue, IssueUser])
def test_every_index_a_report_writes_earns_its_place(model):
    """Each stored report writes every index of these tables. A plain index whose columns begin
    another index or unique constraint (Django's own index of a foreign key, say) serves no
    look-up the longer one does not, and only costs ingest time and disk."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    indexed = {  # name → (columns, unique)
        name: (tuple(c["columns"]), c["unique"])
        for name, c in found.items()
        if (c["index"] or c["unique"]) and c["columns"] and not c["primary_key"]
    }
    assert any(unique for _, unique in indexed.values()), "the table's constraints could not be read"
    covered = [
        (name, other)
        for name, (columns, unique) in indexed.items()
        if not unique
        for other, (longer, _) in indexed.items()
        if len(longer) > len(columns) and longer[: len(columns)] == columns
    ]
    assert covered == [], f"{table}: plain indexes another one begins with"
