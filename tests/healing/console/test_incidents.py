"""The incident page: timeline, stack trace, diagnosis, fix, verification, rollout, recording,
logs, and its action buttons."""

import base64
import gzip
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flags import services as flag_services
from flags.models import Rollout, RolloutPhase
from flags.rollout.start import rollout_start
from healing.audit import NOT_A_PROBLEM
from healing.changes.lifecycle import PatchSpec, change_create, change_record_scorecard
from healing.console import incident
from healing.models import (
    AuditEntry,
    Change,
    ChangeStatus,
    EnqueueState,
    Issue,
    IssueEvent,
    PatchState,
    SessionRecording,
    UserSession,
)
from kaizen_site.models import LLMCall
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory
from tests.owner import owner_staff

pytestmark = pytest.mark.django_db

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n def total(items):\n-    return sum(items) / len(items)\n+    return sum(items) / max(len(items), 1)\n"
FRAMES = [
    {"function": "dispatch", "filename": "django/core/handlers.py", "lineno": 10, "in_app": False},
    {"function": "checkout_view", "filename": "shop/views.py", "lineno": 42, "in_app": True},
    {"function": "total", "filename": "shop/cart.py", "lineno": 7, "in_app": True},
]


def page_of(client, issue) -> str:
    response = client.get(f"/admin/healing/issue/{issue.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def act(client, issue, action, **data):
    return client.post(f"/admin/healing/issue/{issue.pk}/act/{action}/", data)


def in_review_change(issue, **fields) -> Change:
    change = change_create(title="Fix totals", severity="P2", actor="kaizen", issue=issue, **fields)
    Change.objects.filter(pk=change.pk).update(status=ChangeStatus.IN_REVIEW)  # verified: set-up, not a move
    change.refresh_from_db()
    return change


# --- What the page shows -------------------------------------------------------------------------


def test_timeline_reads_as_stages_messages_and_seconds_with_the_ticket_linked(admin_client):
    issue = IssueFactory()
    change = change_create(title="Fix", severity="P2", actor="kaizen", issue=issue)
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=3, seconds=17)
    IssueEventFactory(issue=issue, stage="detected", message="We noticed a problem.", created_at=at)
    IssueEventFactory(issue=issue, stage="fixing", message="Applying a fix.", detail=change.key,
                      created_at=at + timedelta(seconds=9))  # fmt: skip

    page = page_of(admin_client, issue)

    assert "IssueEvent object" not in page
    assert timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S") in page  # to the second
    assert timezone.localtime(at + timedelta(seconds=9)).strftime("%H:%M:%S") in page
    assert "Root cause found" not in page and "Fixing" in page and "Applying a fix." in page
    assert f'href="/admin/healing/change/{change.pk}/change/" class="incident-ticket">{change.key}</a>' in page


def test_stack_trace_is_rendered_as_frames_with_the_app_frames_highlighted(admin_client):
    issue = IssueFactory()
    OccurrenceFactory(issue=issue, payload={"message": "boom", "exception": {
        "type": "ZeroDivisionError", "value": "division by zero", "stacktrace": FRAMES}})  # fmt: skip

    page = page_of(admin_client, issue)

    assert "ZeroDivisionError: division by zero" in page
    assert page.count('<li class="in-app">') == 2 and page.count('<li class="library">') == 1
    assert "shop/cart.py:7" in page
    assert "<summary>Report as received (JSON)</summary>" in page  # the raw JSON, collapsed


def test_stack_trace_reads_the_sentry_shape_and_a_bare_stacktrace():
    sentry = {"exception": {"values": [
        {"type": "KeyError", "value": "cause", "stacktrace": {"frames": []}},
        {"type": "ValueError", "value": "bad", "stacktrace": {"frames": [
            {"function": "handler", "abs_path": "/srv/app/api.py", "lineno": 3, "in_app": True},
            {"function": "parse", "module": "json.decoder"},
        ]}},
    ]}}  # fmt: skip
    trace = incident.stack_trace(sentry)
    assert (trace.type, trace.value) == ("ValueError", "bad")  # the last of the chain was raised
    assert [(f.function, f.location, f.in_app) for f in trace.frames] == [
        ("handler", "/srv/app/api.py:3", True), ("parse", "json.decoder", False)
    ]  # fmt: skip
    assert incident.stack_trace({"stacktrace": FRAMES}).frames[2].function == "total"
    assert incident.stack_trace({"message": "no trace"}) is None


def test_diagnosis_fix_verification_and_rollout_are_shown(admin_client, project):
    issue = IssueFactory(project=project, diagnosis={
        "level": "llm", "root_cause": "An empty cart divides by zero.", "confidence": 0.82,
        "hypotheses": [
            {"hypothesis": "Empty cart", "evidence": "len(items) == 0 in the state", "verdict": "supported"},
            {"hypothesis": "Bad price data", "evidence": "prices are fine", "verdict": "refuted"},
        ],
    })  # fmt: skip
    OccurrenceFactory(issue=issue, user_id="user-42")
    flag_services.flag_create(project=project, key="fix-totals", actor="alice")
    change = in_review_change(issue, flag_key="fix-totals", patch=PatchSpec(summary="Guard the division", diff=DIFF),
                              plan=[{"action": "flag_enable_for_user", "params": {"flag": "fix-totals"}}])  # fmt: skip
    probes = [{"account": account, "user_id": "u", "status": 200, "latency_ms": 12.0, "passed": True,
               "assertion": "status 2xx", "excerpt": ""} for account in ["user"] * 5 + ["generic"] * 5]  # fmt: skip
    change_record_scorecard(change=change, actor="kaizen",
                            verification={"passed": True, "summary": "10/10 replays passed", "probes": probes})  # fmt: skip
    rollout_start(change=change, actor="kaizen", affected_user_id="user-42")

    page = page_of(admin_client, issue)

    assert "An empty cart divides by zero." in page and "confidence 0.82" in page
    assert "Bad price data" in page and 'class="verdict-refuted">refuted' in page
    assert f"<strong>{change.key}</strong>" in page and "flag_enable_for_user" in page
    assert '<span class="diff-add">+    return sum(items) / max(len(items), 1)</span>' in page
    assert "Verification — 10/10 replays passed" in page
    assert page.count('<li class="pass">') == 10
    assert "Phase <strong>Canary</strong> · exposure 0 % · flag <code>fix-totals</code>" in page
    # The buttons offered are the ones that can act: the rollout under way, not the patch any more
    # (its change left review for the canary).
    offered = admin_client.get(f"/admin/healing/issue/{issue.pk}/change/").context["incident_actions"]
    assert set(offered) == {"retry-diagnosis", "rollback", "not-a-problem"}


def test_only_the_actions_that_apply_are_offered(admin_client):
    issue = IssueFactory(stage="fixing")
    assert set(admin_client.get(f"/admin/healing/issue/{issue.pk}/change/").context["incident_actions"]) == {
        "not-a-problem"
    }
    Issue.objects.filter(pk=issue.pk).update(stage="resolved")
    page = page_of(admin_client, issue)
    assert "/act/retry-diagnosis/" in page and "/act/not-a-problem/" not in page
    in_review_change(issue, patch=PatchSpec(summary="Guard", diff=DIFF))
    assert {"approve-patch", "reject-patch"} <= set(
        admin_client.get(f"/admin/healing/issue/{issue.pk}/change/").context["incident_actions"]
    )


def test_the_recording_plays_in_rrweb_player_and_says_so_when_the_player_is_missing(admin_client, monkeypatch):
    events = [{"type": 4, "timestamp": 1, "data": {"href": "https://shop.example.com/", "width": 800, "height": 600}},
              {"type": 2, "timestamp": 2, "data": {"node": {"type": 0, "childNodes": [], "id": 1}}}]  # fmt: skip
    snippet = base64.b64encode(gzip.compress(json.dumps(events).encode())).decode()
    issue = IssueFactory()
    OccurrenceFactory(issue=issue, payload={"message": "x", "recording": snippet})

    page = page_of(admin_client, issue)
    assert 'id="incident-recording"' in page and "rrweb-player/rrweb-player.js" in page
    assert '"timestamp": 2' in page
    assert snippet not in page  # the raw JSON shows its size, not the base64

    monkeypatch.setattr(incident, "player_installed", lambda: False)
    assert "the player is not installed" in page_of(admin_client, issue)


def test_a_recording_that_is_not_rrweb_events_is_not_played():
    assert incident.recording_decode(base64.b64encode(gzip.compress(b'{"hello": 1}')).decode()) is None
    assert incident.recording_decode("not base64!") is None
    bomb = base64.b64encode(gzip.compress(b"[" + b" " * (incident.RECORDING_MAX_BYTES + 10) + b"]")).decode()
    assert incident.recording_decode(bomb) is None


def test_logs_show_the_issues_llm_calls_and_audit_entries(admin_client):
    issue = IssueFactory()
    LLMCall.objects.create(purpose="diagnosis", model="claude-sonnet-5", prompt_fingerprint="x", issue_id=issue.pk,
                           valid=False, error="no submit_diagnosis call in the answer")  # fmt: skip
    LLMCall.objects.create(purpose="diagnosis", model="claude-sonnet-5", prompt_fingerprint="x")  # another issue's
    AuditEntry.objects.create(actor="kaizen", action="issue.move", target=f"issue:{issue.pk}", detail={"to": "x"})
    AuditEntry.objects.create(actor="kaizen", action="issue.move", target="issue:someone-else")

    response = admin_client.get(f"/admin/healing/issue/{issue.pk}/change/")

    assert [c.error for c in response.context["logs"]["llm_calls"]] == ["no submit_diagnosis call in the answer"]
    assert [e.target for e in response.context["logs"]["audit"]] == [f"issue:{issue.pk}"]


def test_the_incident_page_queries_do_not_grow_with_its_history(admin_client, project):
    issue = IssueFactory(project=project)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(f"/admin/healing/issue/{issue.pk}/change/").status_code == 200
        return len(captured)

    OccurrenceFactory(issue=issue)
    change = change_create(title="Fix", severity="P2", actor="kaizen", issue=issue)
    IssueEventFactory(issue=issue, detail=change.key)
    baseline = queries()
    for i in range(15):
        OccurrenceFactory(issue=issue, payload={"message": "x", "exception": {"type": "E", "stacktrace": FRAMES}})
        other = change_create(title=f"Fix {i}", severity="P2", actor="kaizen", issue=issue)
        IssueEventFactory(issue=issue, detail=f"{other.key} and {change.key}")
        LLMCall.objects.create(purpose="diagnosis", model="m", prompt_fingerprint="x", issue_id=issue.pk)
    assert queries() == baseline


def test_the_list_filters_by_first_seen_date(admin_client):
    old = IssueFactory(title="Old one", first_seen=timezone.now() - timedelta(days=40))
    IssueFactory(title="New one")
    week_ago = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    response = admin_client.get("/admin/healing/issue/", {"first_seen__gte": str(week_ago)})  # "Past 7 days"
    titles = {issue.title for issue in response.context["cl"].result_list}
    assert titles == {"New one"} and old.title not in titles


# --- Actions ---------------------------------------------------------------------------------


def test_retry_diagnosis_sends_an_escalated_issue_back_to_work(admin_client, broker):
    issue = IssueFactory(stage="escalated", severity="P1")

    response = act(admin_client, issue, "retry-diagnosis")

    assert response.status_code == 302 and response.url == f"/admin/healing/issue/{issue.pk}/change/"
    issue.refresh_from_db()
    assert issue.stage == "detected"
    assert issue.enqueue_state in (EnqueueState.PENDING, EnqueueState.SENT)  # sent once the broker took it
    assert AuditEntry.objects.filter(action="issue.retry_diagnosis", actor="admin", target=f"issue:{issue.pk}").exists()
    assert IssueEvent.objects.filter(issue=issue, stage="detected", detail="Diagnosis retried by admin.").exists()


def test_retry_diagnosis_is_refused_mid_fix(admin_client):
    issue = IssueFactory(stage="fixing")

    response = act(admin_client, issue, "retry-diagnosis")

    assert response.status_code == 302
    assert Issue.objects.get(pk=issue.pk).stage == "fixing"
    assert not AuditEntry.objects.filter(action="issue.retry_diagnosis").exists()
    assert "its fix is under way" in page_of(admin_client, issue)


def test_actions_take_post_only_and_know_their_names(admin_client):
    issue = IssueFactory(stage="escalated")
    assert admin_client.get(f"/admin/healing/issue/{issue.pk}/act/retry-diagnosis/").status_code == 405
    assert act(admin_client, issue, "delete-everything").status_code == 404
    assert Issue.objects.get(pk=issue.pk).stage == "escalated"


def test_approve_patch_from_the_incident(admin_client, settings):
    settings.KAIZEN_PATCH_EXECUTOR_URL = ""
    issue = IssueFactory()
    change = in_review_change(issue, patch=PatchSpec(summary="Guard", diff=DIFF))

    act(admin_client, issue, "approve-patch")

    change.refresh_from_db()
    assert (change.patch_state, change.patch_approved_by) == (PatchState.APPROVED, "admin")
    assert AuditEntry.objects.filter(action="change.patch.approve", target=f"change:{change.key}").exists()


def test_reject_patch_needs_a_reason_and_sends_the_change_back_for_rework(admin_client):
    issue = IssueFactory()
    change = in_review_change(issue, patch=PatchSpec(summary="Guard", diff=DIFF))

    act(admin_client, issue, "reject-patch")  # no reason: nothing happens
    assert Change.objects.get(pk=change.pk).status == ChangeStatus.IN_REVIEW

    act(admin_client, issue, "reject-patch", why="It hides the empty cart instead of fixing it")

    change.refresh_from_db()
    assert (change.status, change.patch_state) == (ChangeStatus.IN_PROGRESS, PatchState.NONE)
    entry = AuditEntry.objects.get(action="change.patch.reject")
    assert entry.detail == {"why": "It hides the empty cart instead of fixing it"} and entry.actor == "admin"
    assert change.promotions.last().why == "Patch rejected: It hides the empty cart instead of fixing it"


def test_roll_back_kills_the_flag_and_aborts_the_change(admin_client, project):
    issue = IssueFactory(project=project, stage="deployed")
    OccurrenceFactory(issue=issue, user_id="user-42")
    flag = flag_services.flag_create(project=project, key="fix-totals", actor="alice")
    change = in_review_change(issue, flag_key="fix-totals")
    rollout = rollout_start(change=change, actor="kaizen", affected_user_id="user-42")

    act(admin_client, issue, "rollback", why="Checkout errors doubled")

    rollout.refresh_from_db()
    flag.refresh_from_db()
    assert rollout.phase == RolloutPhase.ROLLED_BACK and flag.killed
    assert Change.objects.get(pk=change.pk).status == ChangeStatus.ABORTED
    assert AuditEntry.objects.filter(action="rollout.rollback", actor="admin").exists()
    assert act(admin_client, issue, "rollback", why="again").status_code == 302  # nothing left: a message
    assert Rollout.objects.get(pk=rollout.pk).phase == RolloutPhase.ROLLED_BACK


def test_not_a_problem_closes_the_issue_and_counts_as_a_false_positive(admin_client):
    issue = IssueFactory(stage="escalated")

    act(admin_client, issue, "not-a-problem", why="a bot")

    issue.refresh_from_db()
    assert issue.stage == "resolved"
    entry = AuditEntry.objects.get(action=NOT_A_PROBLEM)
    assert entry.target == f"issue:{issue.pk}" and entry.detail == {"closed": True, "why": "a bot"}


def test_actions_need_the_permissions(client, settings):
    issue = IssueFactory(stage="escalated")
    owner_staff(client, settings, permissions=("view_issue",))

    assert act(client, issue, "not-a-problem").status_code == 403
    assert Issue.objects.get(pk=issue.pk).stage == "escalated"
    assert not AuditEntry.objects.exists()


def test_a_session_recording_is_played_before_the_reports_snippet(admin_client, project):
    issue = IssueFactory(project=project)
    session = UserSession.objects.create(project=project, session_id="s-1", user_id="u-42")
    events = [{"type": 4, "timestamp": 10, "data": {}}, {"type": 2, "timestamp": 11, "data": {"marker": "from-stream"}}]
    SessionRecording.objects.create(session=session, issue=issue, events=events, size_bytes=99, event_count=2)

    response = admin_client.get(f"/admin/healing/issue/{issue.pk}/change/")

    assert response.context["recording"].source.startswith("session recording of ")
    assert "from-stream" in response.content.decode()
