"""Changes (Kaizen tickets): ids, the transition table, races, the promotion and audit logs, the
patch executor webhook, and the console's ticket pages."""

import hashlib
import hmac
import json
import threading

import pytest
import requests
import responses
from django.core.exceptions import ValidationError
from django.db import connection

from healing.changes import lifecycle as changes
from healing.changes import patch_executor
from healing.changes.lifecycle import (
    TRANSITIONS,
    ChangeError,
    ChangeTransitionConflict,
    ChangeTransitionError,
    PatchSpec,
    change_create,
    change_record_scorecard,
    change_transition,
    change_update,
)
from healing.changes.patch_executor import change_approve_patch, change_submit_patch
from healing.models import AuditEntry, Change, ChangeStatus, Component, PatchState, PromotionLogEntry
from kaizen_site import webhooks
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db

S = ChangeStatus
EXECUTOR = "https://executor.example.com/builds"
SECRET = "executor-secret"  # noqa: S105 - a test value
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-timeout = 1\n+timeout = 5\n"


def new_change(**kwargs) -> Change:
    fields = {"title": "Raise the checkout timeout", "severity": "P2", "actor": "alice", **kwargs}
    return change_create(**fields)


def at_status(status: str, **kwargs) -> Change:
    """A change put straight into `status` (test set-up, not a transition)."""
    change = new_change(**kwargs)
    Change.objects.filter(pk=change.pk).update(status=status)
    change.refresh_from_db()
    return change


@pytest.fixture
def component():
    return Component.objects.create(
        id="checkout", name="Checkout", tier=1, owner="bob", slo={"error_rate": 0.01}, rollback_plan="Flag off."
    )


# --- Creating ---------------------------------------------------------------------------------


def test_ids_are_sequential():
    keys = [new_change(title=f"Change {n}").key for n in range(3)]
    assert keys == ["KAIZ-001", "KAIZ-002", "KAIZ-003"]
    assert changes.change_get(key="kaiz-2").title == "Change 1"
    assert changes.change_get(key="KAIZ-003").number == 3
    with pytest.raises(changes.ChangeNotFound):
        changes.change_get(key="KAIZ-999")


def test_a_new_change_is_a_logged_and_audited_draft(component):
    issue = IssueFactory()
    change = new_change(
        component=component,
        issue=issue,
        plan=[{"action": "restart_worker", "params": {"queue": "P2"}}, {"action": "clear_cache"}],
        patch=PatchSpec(summary="Longer timeout", diff=DIFF),
        why="Fixes the timeouts",
    )
    change.refresh_from_db()
    assert change.status == S.DRAFT
    assert change.owner == "bob" and change.rollback_plan == "Flag off."  # the component's defaults
    assert change.plan == [
        {"action": "restart_worker", "params": {"queue": "P2"}},
        {"action": "clear_cache", "params": {}},
    ]
    assert issue.changes.get() == change  # a fix for an issue is a Change linked to it
    entry = change.promotions.get()
    assert (entry.actor, entry.from_status, entry.to_status, entry.why) == ("alice", "", S.DRAFT, "Fixes the timeouts")
    audit = AuditEntry.objects.get(action="change.create")
    assert (audit.actor, audit.target) == ("alice", "change:KAIZ-001")
    assert audit.detail["component"] == "checkout" and audit.detail["issue"] == str(issue.pk)


@pytest.mark.parametrize(
    ("word", "severity"), [("critical", "P0"), ("High", "P1"), ("medium", "P2"), ("low", "P3"), ("p1", "P1")]
)
def test_severity_words_map_to_p_levels(word, severity):
    assert new_change(severity=word).severity == severity


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"plan": [{"params": {}}]}, "plan"),
        ({"plan": [{"action": "x", "extra": 1}]}, "plan"),
        ({"plan": {"action": "x"}}, "plan"),
        ({"flag_key": "no spaces"}, "flag_key"),
        ({"title": "   "}, "title"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(kwargs, field):
    with pytest.raises(ValidationError) as caught:
        new_change(**kwargs)
    assert field in caught.value.message_dict
    assert not Change.objects.exists() and not PromotionLogEntry.objects.exists()


def test_unknown_severity_is_refused():
    with pytest.raises(ChangeError, match="Unknown severity"):
        new_change(severity="urgent")


@pytest.mark.django_db(transaction=True)
def test_concurrent_creators_get_distinct_sequential_numbers():
    barrier = threading.Barrier(4)
    errors = []

    def create(n: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                new_change(title=f"thread {n} change {i}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Change.objects.values_list("number", flat=True)) == list(range(1, 21))


# --- Transitions ------------------------------------------------------------------------------

PAIRS = [(source, to) for source in S.values for to in S.values]
LEGAL = [pair for pair in PAIRS if pair[1] in TRANSITIONS[pair[0]]]
ILLEGAL = [pair for pair in PAIRS if pair[1] not in TRANSITIONS[pair[0]]]


def test_the_table_is_the_documented_lifecycle():
    assert set(LEGAL) == {
        (S.DRAFT, S.PLANNED), (S.PLANNED, S.IN_PROGRESS), (S.IN_PROGRESS, S.IN_REVIEW), (S.IN_REVIEW, S.CANARY),
        (S.CANARY, S.COMPLETE), (S.IN_REVIEW, S.IN_PROGRESS),
        *((source, S.ABORTED) for source in (S.DRAFT, S.PLANNED, S.IN_PROGRESS, S.IN_REVIEW, S.CANARY)),
    }  # fmt: skip


@pytest.mark.parametrize(("source", "to"), LEGAL)
def test_legal_transition_applies_once_with_its_log_and_audit(source, to):
    change = at_status(source)
    change_transition(change=change, to=to, actor="carol", why="looks good")
    assert change.status == to
    assert Change.objects.get(pk=change.pk).status == to
    entry = change.promotions.order_by("-id").first()
    assert (entry.actor, entry.from_status, entry.to_status, entry.why) == ("carol", source, to, "looks good")
    audit = AuditEntry.objects.get(action="change.transition")
    assert audit.actor == "carol" and audit.target == f"change:{change.key}"
    assert audit.detail == {"from": source, "to": to, "why": "looks good", "promotion": entry.pk}


@pytest.mark.parametrize(("source", "to"), ILLEGAL)
def test_illegal_transition_is_refused_naming_from_to_and_the_allowed_moves(source, to):
    change = at_status(source)
    with pytest.raises(ChangeTransitionError) as caught:
        change_transition(change=change, to=to, actor="carol", why="")
    error = caught.value
    assert (error.from_status, error.to_status, error.allowed) == (source, to, TRANSITIONS[source])
    message = str(error)
    assert f"{source} → {to} is not allowed" in message
    assert all(move in message for move in TRANSITIONS[source])
    if not TRANSITIONS[source]:
        assert f"{source} is final" in message
    assert Change.objects.get(pk=change.pk).status == source
    assert change.promotions.count() == 1 and not AuditEntry.objects.filter(action="change.transition").exists()


def test_an_unknown_status_is_refused():
    change = new_change()
    with pytest.raises(ChangeTransitionError, match="no such status"):
        change_transition(change=change, to="shipped", actor="carol", why="")


def test_a_duplicate_transition_applies_once():
    change = at_status(S.PLANNED)
    first, second = Change.objects.get(pk=change.pk), Change.objects.get(pk=change.pk)  # two readers, both "planned"
    change_transition(change=first, to=S.IN_PROGRESS, actor="worker-1", why="")
    with pytest.raises(ChangeTransitionConflict, match="moved to in_progress since") as caught:
        change_transition(change=second, to=S.IN_PROGRESS, actor="worker-2", why="")
    assert caught.value.from_status == S.PLANNED
    moves = list(change.promotions.values_list("actor", "to_status"))
    assert moves == [("alice", S.DRAFT), ("worker-1", S.IN_PROGRESS)]
    assert AuditEntry.objects.filter(action="change.transition").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_transitions_one_wins():
    change = at_status(S.IN_REVIEW)
    barrier = threading.Barrier(2)
    outcomes = []

    def move(to: str) -> None:
        mine = Change.objects.get(pk=change.pk)
        barrier.wait()
        try:
            change_transition(change=mine, to=to, actor=f"racer-{to}", why="")
            outcomes.append(("moved", to))
        except ChangeTransitionConflict:
            outcomes.append(("conflict", to))
        finally:
            connection.close()

    threads = [threading.Thread(target=move, args=(to,)) for to in (S.CANARY, S.ABORTED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kind for kind, _ in outcomes) == ["conflict", "moved"]
    winner = next(to for kind, to in outcomes if kind == "moved")
    assert Change.objects.get(pk=change.pk).status == winner
    assert change.promotions.exclude(to_status=S.DRAFT).count() == 1


def test_the_promotion_log_is_append_only():
    change = new_change()
    change_transition(change=change, to=S.PLANNED, actor="carol", why="")
    entry = change.promotions.order_by("-id").first()
    entry.why = "rewritten"
    with pytest.raises(ValidationError, match="append-only"):
        entry.save()
    with pytest.raises(ValidationError, match="append-only"):
        entry.delete()
    assert PromotionLogEntry.objects.get(pk=entry.pk).why == ""


# --- Editing and the scorecard ----------------------------------------------------------------


def test_update_is_audited_and_frozen_once_in_review(component):
    change = new_change(patch=PatchSpec(summary="s", diff=DIFF))
    change = change_update(change=change, fields={"title": "Renamed", "component": component}, actor="carol")
    assert (change.title, change.component_id) == ("Renamed", "checkout")
    audit = AuditEntry.objects.get(action="change.update")
    assert audit.detail["before"] == {"title": "Raise the checkout timeout", "component": None}
    assert audit.detail["after"] == {"title": "Renamed", "component": "checkout"}

    Change.objects.filter(pk=change.pk).update(status=S.IN_REVIEW)
    with pytest.raises(ChangeError, match="patch_diff can change only while"):
        change_update(change=change, fields={"patch_diff": "other"}, actor="carol")
    change_update(change=change, fields={"owner": "dave"}, actor="carol")  # not the reviewed content

    Change.objects.filter(pk=change.pk).update(status=S.COMPLETE)
    with pytest.raises(ChangeError, match="finished change"):
        change_update(change=change, fields={"owner": "erin"}, actor="carol")
    with pytest.raises(ValidationError):
        change_update(change=change, fields={"status": S.DRAFT}, actor="carol")


def test_a_new_patch_clears_the_old_submission():
    change = at_status(S.IN_PROGRESS, patch=PatchSpec(summary="s", diff=DIFF))
    Change.objects.filter(pk=change.pk).update(patch_state=PatchState.FAILED, patch_error="boom")
    change = change_update(change=change, fields={"patch_diff": DIFF + "+more\n"}, actor="carol")
    assert (change.patch_state, change.patch_error) == (PatchState.NONE, "")


def test_scorecard_parts_merge():
    change = new_change()
    change_record_scorecard(change=change, actor="kaizen", verification={"passed": 10, "runs": 10})
    change_record_scorecard(change=change, actor="kaizen", metrics_before={"error_rate": 0.05})
    change_record_scorecard(change=change, actor="kaizen", metrics_after={"error_rate": 0.001})
    scorecard = Change.objects.get(pk=change.pk).scorecard
    assert scorecard["verification"] == {"passed": 10, "runs": 10}
    assert scorecard["metrics"] == {"before": {"error_rate": 0.05}, "after": {"error_rate": 0.001}}
    assert AuditEntry.objects.filter(action="change.scorecard").count() == 3


def test_digest_counts_open_tickets_by_status_and_severity():
    at_status(S.PLANNED, severity="P1")
    at_status(S.PLANNED, severity="P1")
    at_status(S.CANARY, severity="P3")
    at_status(S.COMPLETE)
    at_status(S.ABORTED)
    digest = changes.changes_digest()
    assert digest.total == 3
    assert digest.counts == {S.PLANNED: {"P1": 2}, S.CANARY: {"P3": 1}}


# --- The patch executor -------------------------------------------------------------------------


@pytest.fixture
def executor(settings):
    settings.KAIZEN_PATCH_EXECUTOR_URL = EXECUTOR
    settings.KAIZEN_PATCH_EXECUTOR_SECRET = SECRET
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def no_executor(settings):
    settings.KAIZEN_PATCH_EXECUTOR_URL = ""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock  # nothing registered: any request would fail the test


@pytest.fixture
def in_review(component):
    issue = IssueFactory()
    patch = PatchSpec(summary="Longer", diff=DIFF)
    return at_status(S.IN_REVIEW, component=component, issue=issue, flag_key="fix-timeout", patch=patch)


def test_patch_goes_to_the_executor_signed(executor, in_review):
    executor.add(responses.POST, EXECUTOR, json={"build_id": "build-42"}, status=202)
    change = change_submit_patch(change=in_review, actor="kaizen")

    (call,) = executor.calls
    body = call.request.body
    assert call.request.headers["X-Kaizen-Signature"] == (
        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.req_kwargs["timeout"] == (webhooks.CONNECT_TIMEOUT, patch_executor.EXECUTOR_READ_TIMEOUT)
    sent = json.loads(body)
    assert sent["change"] == "KAIZ-001" and sent["patch"] == {"summary": "Longer", "diff": DIFF}
    assert sent["component"] == "checkout" and sent["flag_key"] == "fix-timeout"
    assert sent["issue"] == str(in_review.issue_id)
    assert call.request.headers["X-Kaizen-Delivery"] == sent["delivery"]

    stored = Change.objects.get(pk=change.pk)
    assert (stored.patch_state, stored.patch_build_id, stored.patch_error) == (PatchState.SUBMITTED, "build-42", "")
    assert stored.patch_submitted_at is not None and stored.status == S.IN_REVIEW
    audit = AuditEntry.objects.get(action="change.patch.submit")
    assert audit.detail == {"delivery": sent["delivery"], "build_id": "build-42"}

    with pytest.raises(ChangeError, match="accepted by the executor"):
        change_submit_patch(change=change, actor="kaizen")  # never sent twice
    assert len(executor.calls) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 500, "body": "database down"}, "HTTP 500: database down (transient)"),
        ({"body": requests.exceptions.ReadTimeout("slow")}, "did not answer within 30 s (transient)"),
        ({"body": requests.exceptions.ConnectionError("refused")}, "could not reach the executor"),
        ({"status": 200, "body": "<html>ok</html>"}, "not with JSON: <html>ok</html> (permanent)"),
        ({"status": 200, "json": {"queued": True}}, "has no build_id"),
        ({"status": 403, "body": "bad signature"}, "HTTP 403: bad signature (permanent)"),
        ({"status": 302, "headers": {"Location": "/elsewhere"}}, "HTTP 302"),
    ],
)
def test_executor_failures_are_recorded_on_the_change(executor, in_review, answer, error):
    executor.add(responses.POST, EXECUTOR, **answer)
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert len(executor.calls) == 1
    stored = Change.objects.get(pk=change.pk)
    assert stored.patch_state == PatchState.FAILED and stored.patch_build_id == ""
    assert error in stored.patch_error
    assert stored.status == S.IN_REVIEW
    assert error in AuditEntry.objects.get(action="change.patch.fail").detail["error"]


def test_a_failed_patch_can_be_sent_again(executor, in_review):
    executor.add(responses.POST, EXECUTOR, status=503)
    change = change_submit_patch(change=in_review, actor="kaizen")
    executor.replace(responses.POST, EXECUTOR, json={"build_id": 7})
    change = change_submit_patch(change=change, actor="kaizen")
    assert (change.patch_state, change.patch_build_id, change.patch_error) == (PatchState.SUBMITTED, "7", "")
    first, second = (json.loads(call.request.body) for call in executor.calls)
    assert first["delivery"] == second["delivery"]  # the executor can tell it is the same patch


def test_no_patch_is_sent_unsigned(executor, in_review, settings):
    settings.KAIZEN_PATCH_EXECUTOR_SECRET = ""
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert executor.calls == [] or len(executor.calls) == 0
    assert change.patch_state == PatchState.FAILED and "never sent unsigned" in change.patch_error


def test_without_an_executor_the_patch_waits_for_the_owner(no_executor, in_review):
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert len(no_executor.calls) == 0
    assert (change.status, change.patch_state) == (S.IN_REVIEW, PatchState.AWAITING_APPROVAL)
    assert AuditEntry.objects.get(action="change.patch.wait").detail["why"] == patch_executor.NOT_CONFIGURED

    change = change_approve_patch(change=change, actor="owner")
    assert (change.patch_state, change.patch_approved_by) == (PatchState.APPROVED, "owner")
    assert change.patch_approved_at is not None and len(no_executor.calls) == 0
    with pytest.raises(ChangeError, match="nothing to approve"):
        change_approve_patch(change=change, actor="owner")


def test_approving_sends_the_patch_when_an_executor_is_configured(executor, in_review):
    executor.add(responses.POST, EXECUTOR, json={"build_id": "b-1"})
    change = change_approve_patch(change=in_review, actor="owner")
    assert (change.patch_state, change.patch_build_id, change.patch_approved_by) == (
        PatchState.SUBMITTED, "b-1", "owner"
    )  # fmt: skip


@pytest.mark.parametrize(("status", "patch", "message"), [
    (S.IN_PROGRESS, True, "while its change is in_review"),
    (S.IN_REVIEW, False, "has no code patch"),
])  # fmt: skip
def test_a_patch_is_submitted_only_in_review(executor, status, patch, message):
    change = at_status(status, patch=PatchSpec(summary="s", diff=DIFF) if patch else None)
    with pytest.raises(ChangeError, match=message):
        change_submit_patch(change=change, actor="kaizen")
    assert len(executor.calls) == 0


# --- The console --------------------------------------------------------------------------------


def test_console_lists_changes(admin_client, component):
    issue = IssueFactory(title="Checkout times out")
    new_change(component=component, issue=issue, severity="high")
    page = admin_client.get("/admin/healing/change/").content.decode()
    for text in ("KAIZ-001", "Raise the checkout timeout", "draft", "checkout", "P1", "Checkout times out"):
        assert text in page
    assert "KAIZ-001" in admin_client.get("/admin/healing/change/", {"q": "kaiz-1"}).content.decode()
    assert "KAIZ-001" not in admin_client.get("/admin/healing/change/", {"q": "KAIZ-2"}).content.decode()


def change_page_post(admin_client, change: Change, **overrides) -> dict:
    from tests.healing.console.test_admin import rendered_form_data

    response = admin_client.get(f"/admin/healing/change/{change.pk}/change/")
    assert response.status_code == 200
    return {**rendered_form_data(response), **overrides}


def test_console_moves_a_change_through_change_transition(admin_client):
    change = new_change()
    data = change_page_post(admin_client, change, move_to=S.PLANNED, why="ready")
    response = admin_client.post(f"/admin/healing/change/{change.pk}/change/", data, follow=True)
    assert response.status_code == 200
    change.refresh_from_db()
    assert change.status == S.PLANNED
    entry = change.promotions.order_by("-id").first()
    assert (entry.actor, entry.from_status, entry.why) == ("admin", S.DRAFT, "ready")


def test_console_refuses_a_stale_move_with_an_error_not_a_500(admin_client):
    change = new_change()
    data = change_page_post(admin_client, change, move_to=S.PLANNED)
    Change.objects.filter(pk=change.pk).update(status=S.ABORTED)  # moved while the page was open
    response = admin_client.post(f"/admin/healing/change/{change.pk}/change/", data)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Change.objects.get(pk=change.pk).status == S.ABORTED


def test_console_edits_go_through_change_update(admin_client):
    change = new_change()
    data = change_page_post(admin_client, change, title="Better title", plan='[{"action": "clear_cache"}]')
    response = admin_client.post(f"/admin/healing/change/{change.pk}/change/", data)
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.title == "Better title" and change.plan == [{"action": "clear_cache", "params": {}}]
    assert AuditEntry.objects.filter(action="change.update", actor="admin").exists()

    data = change_page_post(admin_client, change, plan='[{"nope": 1}]')
    response = admin_client.post(f"/admin/healing/change/{change.pk}/change/", data)
    assert response.status_code == 200 and "Not a list of remediation actions" in response.content.decode()


def test_console_creates_a_change_with_the_next_id(admin_client, component):
    new_change()
    data = {
        "title": "From the console", "severity": "P1", "owner": "", "component": "checkout", "issue": "",
        "flag_key": "", "objective": "", "success_criteria": "", "abort_criteria": "", "rollback_plan": "",
        "plan": "[]", "patch_summary": "", "patch_diff": "", "why": "owner's idea",
        "promotions-TOTAL_FORMS": "0", "promotions-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = admin_client.post("/admin/healing/change/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Change.objects.get(title="From the console")
    assert created.key == "KAIZ-002" and created.owner == "bob" and created.created_by == "admin"
    assert created.promotions.get().why == "owner's idea"


def test_console_actions_move_and_show_errors(admin_client):
    draft, done = new_change(), at_status(S.COMPLETE)
    response = admin_client.post(
        "/admin/healing/change/",
        {"action": "move_to_planned", "_selected_action": [draft.pk, done.pk], "why": "batch"},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "KAIZ-001 → planned." in page
    assert "KAIZ-002: complete → planned is not allowed" in page
    assert Change.objects.get(pk=draft.pk).status == S.PLANNED and draft.promotions.order_by("-id")[0].why == "batch"
    assert Change.objects.get(pk=done.pk).status == S.COMPLETE


def test_console_shows_a_waiting_patch_and_approves_it(admin_client, no_executor, in_review):
    change_submit_patch(change=in_review, actor="kaizen")
    page = admin_client.get(f"/admin/healing/change/{in_review.pk}/change/").content.decode()
    assert "Patch executor not configured: waiting for the owner&#x27;s approval" in page
    response = admin_client.post(
        "/admin/healing/change/", {"action": "approve_patch", "_selected_action": [in_review.pk]}, follow=True
    )
    assert "patch approved. Apply it" in response.content.decode()
    stored = Change.objects.get(pk=in_review.pk)
    assert (stored.patch_state, stored.patch_approved_by) == (PatchState.APPROVED, "admin")


def test_console_promotion_log_is_read_only(admin_client):
    change = new_change()
    response = admin_client.get(f"/admin/healing/change/{change.pk}/change/")
    (inline,) = response.context["inline_admin_formsets"]
    request = response.wsgi_request
    assert not inline.opts.has_add_permission(request, change)
    assert not inline.opts.has_change_permission(request, change)
    assert not inline.opts.has_delete_permission(request, change)
    assert "/admin/healing/promotionlogentry/" not in admin_client.get("/admin/").content.decode()
    assert not response.context["has_delete_permission"]


def test_console_component_edits_are_audited(admin_client):
    data = {"id": "auth", "name": "Auth", "tier": "2", "owner": "erin", "slo": '{"p95_ms": 300}', "rollback_plan": ""}
    assert admin_client.post("/admin/healing/component/add/", data).status_code == 302
    assert Component.objects.get(pk="auth").slo == {"p95_ms": 300}
    assert AuditEntry.objects.get(action="component.create").actor == "admin"
    bad = {**data, "id": "auth2", "slo": '{"p95_ms": "fast"}'}
    response = admin_client.post("/admin/healing/component/add/", bad)
    assert response.status_code == 200 and "slo.p95_ms" in response.content.decode()


def test_console_move_lost_to_a_race_shows_an_error(admin_client, monkeypatch):
    change = new_change()
    data = change_page_post(admin_client, change, move_to=S.PLANNED, title="Edited meanwhile")
    original = changes.change_transition

    def racing(**kwargs):
        Change.objects.filter(pk=change.pk).update(status=S.ABORTED)  # someone else got there first
        return original(**kwargs)

    monkeypatch.setattr(changes, "change_transition", racing)
    response = admin_client.post(f"/admin/healing/change/{change.pk}/change/", data, follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was saved" in page and "has moved to aborted since" in page
    assert "was changed successfully" not in page
    stored = Change.objects.get(pk=change.pk)
    # (The simulated rival shares the test's connection, so its write was rolled back with ours.)
    assert stored.status != S.PLANNED and stored.title == "Raise the checkout timeout"
    assert change.promotions.count() == 1 and not AuditEntry.objects.filter(action="change.update").exists()


@pytest.mark.parametrize("status", S.values)
def test_console_change_page_renders_in_every_status(admin_client, status):
    change = at_status(status, patch=PatchSpec(summary="s", diff=DIFF))
    response = admin_client.get(f"/admin/healing/change/{change.pk}/change/")
    assert response.status_code == 200
    form = response.context["adminform"].form
    offered = [value for value, _ in form.fields["move_to"].choices if value]
    assert offered == list(TRANSITIONS[status])
    assert ("patch_diff" in form.fields) == (status in changes.CONTENT_EDITABLE_STATUSES)
    assert ("title" in form.fields) == bool(TRANSITIONS[status])
