"""Every change is validated and recorded: FlagChange history, the audit log, the version bump."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from flags import services
from flags.models import Flag, FlagChange, SnapshotVersion
from healing.models import AuditEntry


def _version(project) -> int:
    return SnapshotVersion.objects.get(project=project).version


def test_create_records_history_audit_and_version(make_flag, project):
    flag = make_flag(description="New checkout", why="issue #12")
    change = FlagChange.objects.get(flag=flag)
    assert (change.action, change.actor, change.why, change.before) == ("create", "alice", "issue #12", {})
    assert change.after == {
        "description": "New checkout", "enabled": False, "rollout_percentage": 0,
        "group_id": "new-checkout", "status": "stable", "killed": False,
    }  # fmt: skip
    audit = AuditEntry.objects.get(action="flag.create")
    assert (audit.actor, audit.target) == ("alice", f"flag:{project.slug}/new-checkout")
    assert audit.detail["flag_change"] == change.pk
    assert _version(project) == 1


def test_update_records_only_what_changed(make_flag, project):
    flag = make_flag()
    services.flag_update(flag=flag, changes={"enabled": True, "rollout_percentage": 10, "status": "stable"},
                         actor="bob", why="canary passed")  # fmt: skip
    change = FlagChange.objects.filter(flag=flag).first()
    assert (change.action, change.actor, change.why) == ("update", "bob", "canary passed")
    assert change.before == {"enabled": False, "rollout_percentage": 0}
    assert change.after == {"enabled": True, "rollout_percentage": 10}
    assert AuditEntry.objects.filter(action="flag.update", actor="bob").count() == 1
    assert _version(project) == 2


def test_update_without_a_difference_writes_nothing(make_flag, project):
    flag = make_flag(enabled=True)
    services.flag_update(flag=flag, changes={"enabled": True}, actor="bob", why="")
    assert FlagChange.objects.filter(flag=flag).count() == 1
    assert _version(project) == 1


@pytest.mark.parametrize("percentage", [-1, 101, 250])
def test_percentage_outside_0_100_is_refused(make_flag, percentage):
    flag = make_flag()
    with pytest.raises(ValidationError) as err:
        services.flag_update(flag=flag, changes={"rollout_percentage": percentage}, actor="bob", why="")
    assert "rollout_percentage" in err.value.message_dict
    flag.refresh_from_db()
    assert flag.rollout_percentage == 0 and FlagChange.objects.filter(flag=flag).count() == 1


def test_invalid_creation_is_refused(make_flag, project):
    make_flag(key="taken")
    for key, fields in [("taken", {}), ("evaluate", {}), ("has:colon", {}), ("ok", {"rollout_percentage": 101})]:
        with pytest.raises(ValidationError):
            services.flag_create(project=project, key=key, actor="alice", **fields)
    assert Flag.objects.count() == 1


def test_only_editable_fields_may_change(make_flag):
    with pytest.raises(ValidationError):
        services.flag_update(flag=make_flag(), changes={"killed": True}, actor="bob", why="")


def test_kill_and_revive(make_flag, project):
    flag = services.flag_kill(flag=make_flag(enabled=True), actor="carol", why="500s on checkout")
    assert flag.killed and flag.killed_by == "carol" and flag.killed_at is not None
    services.flag_kill(flag=flag, actor="carol", why="again")  # already killed: nothing recorded
    flag = services.flag_revive(flag=flag, actor="carol", why="fixed")
    assert not flag.killed and flag.killed_at is None
    actions = list(FlagChange.objects.filter(flag=flag).values_list("action", "why").order_by("id"))
    assert actions == [("create", ""), ("kill", "500s on checkout"), ("revive", "fixed")]
    target = f"flag:{project.slug}/{flag.key}"
    assert AuditEntry.objects.filter(action="flag.kill", actor="carol", target=target).exists()


def test_override_history(make_flag):
    flag = make_flag()
    expires = timezone.now() + timedelta(hours=1)
    services.override_set(flag=flag, user_id="42", enabled=True, actor="kaizen", why="canary", expires_at=expires)
    services.override_set(flag=flag, user_id="42", enabled=True, actor="kaizen", why="canary", expires_at=expires)
    services.override_set(flag=flag, user_id="42", enabled=False, actor="alice", why="opt out")
    changes = list(FlagChange.objects.filter(flag=flag, action="override.set").order_by("id"))
    assert len(changes) == 2  # the identical second call changed nothing
    assert changes[0].before == {} and changes[0].after["expires_at"] == expires.isoformat()
    assert changes[1].before["enabled"] is True and changes[1].after == {
        "user_id": "42", "enabled": False, "reason": "opt out", "expires_at": None,
    }  # fmt: skip
    assert AuditEntry.objects.filter(action="flag.override.set").count() == 2
