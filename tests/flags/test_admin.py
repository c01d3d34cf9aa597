"""The console: edits go through the services, so they land in the history and the audit log."""

from flags.models import Flag, FlagChange, Override
from healing.models import AuditEntry

CHANGELIST = "/admin/flags/flag/"


def _inline_management(flag=None, *, new_overrides=0) -> dict:
    overrides = flag.overrides.count() if flag else 0
    changes = flag.changes.count() if flag else 0
    return {
        "overrides-TOTAL_FORMS": overrides + new_overrides, "overrides-INITIAL_FORMS": overrides,
        "changes-TOTAL_FORMS": changes, "changes-INITIAL_FORMS": changes,
    }  # fmt: skip


def _edit_form(flag, **fields) -> dict:
    data = {
        "description": flag.description, "rollout_percentage": flag.rollout_percentage,
        "group_id": flag.group_id, "status": flag.status, "why": "",
        **_inline_management(flag),
    }  # fmt: skip
    if flag.enabled:
        data["enabled"] = "on"
    for index, override in enumerate(flag.overrides.all()):
        prefix = f"overrides-{index}-"
        data.update({f"{prefix}id": override.pk, f"{prefix}flag": flag.pk,
                     f"{prefix}user_id": override.user_id, f"{prefix}reason": override.reason})  # fmt: skip
        if override.enabled:
            data[f"overrides-{index}-enabled"] = "on"
    data.update(fields)
    return data


def test_emergency_kill_switch_action(admin_client, make_flag, project):
    flags = [make_flag(key="a", enabled=True, rollout_percentage=100), make_flag(key="b", enabled=True)]
    response = admin_client.post(CHANGELIST, {"action": "kill_switch", "_selected_action": [f.pk for f in flags]})
    assert response.status_code == 302
    assert set(Flag.objects.filter(killed=True, killed_by="admin").values_list("key", flat=True)) == {"a", "b"}
    kills = FlagChange.objects.filter(action="kill", actor="admin")
    assert kills.count() == 2 and kills.first().why == "Emergency kill switch in the console."
    assert set(AuditEntry.objects.filter(action="flag.kill", actor="admin").values_list("target", flat=True)) == {
        f"flag:{project.slug}/a", f"flag:{project.slug}/b",
    }  # fmt: skip
    response = admin_client.post(CHANGELIST, {"action": "revive", "_selected_action": [flags[0].pk]})
    assert not Flag.objects.get(key="a").killed and FlagChange.objects.filter(action="revive").count() == 1


def test_create_in_the_console_is_recorded(admin_client, project):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "project": project.pk,
            "key": "dark-mode",
            "description": "",
            "rollout_percentage": 5,
            "group_id": "",
            "status": "testing",
            "why": "owner asked",
            **_inline_management(),
        },  # fmt: skip
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    flag = Flag.objects.get(key="dark-mode")
    assert (flag.group_id, flag.created_by, flag.rollout_percentage) == ("dark-mode", "admin", 5)
    change = FlagChange.objects.get(flag=flag)
    assert (change.action, change.actor, change.why) == ("create", "admin", "owner asked")
    assert AuditEntry.objects.filter(action="flag.create", actor="admin").exists()


def test_a_reserved_key_is_refused_in_the_console(admin_client, project):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {"project": project.pk, "key": "evaluate", "rollout_percentage": 0, "status": "stable", **_inline_management()},
    )
    assert response.status_code == 200 and not Flag.objects.exists()


def test_edit_in_the_console_is_recorded(admin_client, make_flag):
    flag = make_flag(enabled=True, rollout_percentage=10)
    data = _edit_form(flag, rollout_percentage=50, why="phase 2")
    response = admin_client.post(f"{CHANGELIST}{flag.pk}/change/", data)
    assert response.status_code == 302
    change = FlagChange.objects.filter(flag=flag).first()
    assert (change.action, change.actor, change.before, change.after, change.why) == (
        "update", "admin", {"rollout_percentage": 10}, {"rollout_percentage": 50}, "phase 2",
    )  # fmt: skip
    assert AuditEntry.objects.filter(action="flag.update", actor="admin").exists()


def test_a_percentage_over_100_is_refused_in_the_console(admin_client, make_flag):
    flag = make_flag(rollout_percentage=10)
    response = admin_client.post(f"{CHANGELIST}{flag.pk}/change/", _edit_form(flag, rollout_percentage=150))
    assert response.status_code == 200 and "rollout_percentage" in response.context["adminform"].form.errors
    flag.refresh_from_db()
    assert flag.rollout_percentage == 10 and FlagChange.objects.filter(flag=flag).count() == 1


def test_overrides_in_the_console_are_recorded(admin_client, make_flag):
    flag = make_flag()
    data = _edit_form(flag, **{"overrides-TOTAL_FORMS": 1, "overrides-0-user_id": "42", "overrides-0-enabled": "on",
                               "overrides-0-reason": "VIP tester"})  # fmt: skip
    assert admin_client.post(f"{CHANGELIST}{flag.pk}/change/", data).status_code == 302
    override = Override.objects.get(flag=flag)
    assert (override.user_id, override.enabled, override.reason) == ("42", True, "VIP tester")
    assert override.created_by == "admin"
    assert FlagChange.objects.get(flag=flag, action="override.set").actor == "admin"

    flag.refresh_from_db()
    data = _edit_form(flag, **{"overrides-0-DELETE": "on"})
    assert admin_client.post(f"{CHANGELIST}{flag.pk}/change/", data).status_code == 302
    assert not Override.objects.exists()
    assert FlagChange.objects.filter(flag=flag, action="override.clear").count() == 1


def test_console_pages_render(admin_client, make_flag):
    flag = make_flag()
    assert admin_client.get(CHANGELIST).status_code == 200
    page = admin_client.get(f"{CHANGELIST}{flag.pk}/change/")
    assert page.status_code == 200 and b"Emergency kill switch" not in page.content  # the action lives on the list
    assert b"Emergency kill switch" in admin_client.get(CHANGELIST).content
    assert admin_client.get("/admin/flags/flagchange/").status_code == 200
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 200
