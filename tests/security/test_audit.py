"""Every console change and action lands in the read-only audit log: who, what, on which object,
the details and the client's address; Kaizen's own actions carry no address."""

import pytest
from django.contrib.auth.models import Group

from healing.audit import AUTOMATIC, audit_record
from healing.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_adding_changing_and_deleting_in_the_console_are_audited(admin_client):
    assert admin_client.post("/admin/auth/group/add/", {"name": "on-call"}).status_code == 302
    group = Group.objects.get(name="on-call")
    added = AuditEntry.objects.get(action="admin.add")
    assert (added.actor, added.target, added.ip) == ("admin", f"auth.group:{group.pk}", "127.0.0.1")
    assert added.detail["object"] == "on-call"

    assert admin_client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "pager"}).status_code == 302
    changed = AuditEntry.objects.get(action="admin.change")
    assert changed.detail["object"] == "pager" and "Name" in changed.detail["change"]

    # The bulk delete: its confirmation page does nothing and records nothing; the confirmed post does.
    confirm = admin_client.post("/admin/auth/group/", {"action": "delete_selected", "_selected_action": [group.pk]})
    assert confirm.status_code == 200 and not AuditEntry.objects.filter(action__in=["admin.delete", "admin.action"])
    done = admin_client.post(
        "/admin/auth/group/", {"action": "delete_selected", "_selected_action": [group.pk], "post": "yes"}
    )
    assert done.status_code == 302 and not Group.objects.exists()
    deleted = AuditEntry.objects.get(action="admin.delete")
    assert (deleted.target, deleted.detail, deleted.ip) == (f"auth.group:{group.pk}", {"object": "pager"}, "127.0.0.1")
    action = AuditEntry.objects.get(action="admin.action")
    assert action.detail == {"action": "delete_selected", "all_matching": False, "ids": [str(group.pk)], "count": 1}


def test_a_custom_admin_action_is_audited_with_its_selection(admin_client, project_key):
    from flags.services import flag_create

    flag = flag_create(project=project_key.project, key="checkout", description="", enabled=True, actor=AUTOMATIC)
    admin_client.post("/admin/flags/flag/", {"action": "kill_switch", "_selected_action": [flag.pk]})
    entry = AuditEntry.objects.get(action="admin.action")
    assert (entry.actor, entry.target, entry.ip) == ("admin", "flags.flag", "127.0.0.1")
    assert entry.detail["action"] == "kill_switch" and entry.detail["ids"] == [str(flag.pk)]


def test_automatic_actions_carry_no_address():
    entry = audit_record(actor=AUTOMATIC, action="issue.fix", target="issue:1")
    assert entry.ip is None


def test_the_audit_log_is_read_only_in_the_console(admin_client):
    entry = audit_record(actor=AUTOMATIC, action="issue.fix", target="issue:1", detail={"a": 1})
    assert admin_client.get("/admin/healing/auditentry/").status_code == 200
    assert admin_client.get("/admin/healing/auditentry/add/").status_code == 403
    assert admin_client.post("/admin/healing/auditentry/add/", {"actor": "x"}).status_code == 403
    assert admin_client.post(f"/admin/healing/auditentry/{entry.pk}/change/", {"actor": "x"}).status_code == 403
    assert admin_client.post(f"/admin/healing/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.actor == AUTOMATIC and AuditEntry.objects.filter(pk=entry.pk).exists()
