"""Changes and components in the console."""

import pytest

from healing.changes import lifecycle as changes
from healing.changes.lifecycle import (
    TRANSITIONS,
    PatchSpec,
)
from healing.changes.patch_executor import change_submit_patch
from healing.models import AuditEntry, Change, Component, PatchState
from tests.factories import IssueFactory
from tests.healing.changes.support import DIFF, S, at_status, new_change

pytestmark = pytest.mark.django_db


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
