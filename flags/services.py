"""Every change to a flag or an override: validated, recorded (FlagChange + the audit log), and
announced to every process's snapshot once committed. Views, the admin and the rollout engine
change flags only through these functions."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from flags import evaluate
from flags.models import RESERVED_KEYS, Flag, FlagChange, FlagStatus, Override, SnapshotVersion
from healing.audit import audit_record
from healing.models import Project
from kaizen_site.diff import changes_between, fields_read

# What flag_update may change. The kill switch has its own functions (flag_kill, flag_revive),
# so that it always carries who pulled it and when.
EDITABLE = ("description", "enabled", "rollout_percentage", "group_id", "status")
RECORDED = (*EDITABLE, "killed")


def _state(flag: Flag) -> dict[str, Any]:
    return {field: getattr(flag, field) for field in RECORDED}


def _override_state(override: Override | None) -> dict[str, Any]:
    if override is None:
        return {}
    return {
        "user_id": override.user_id,
        "enabled": override.enabled,
        "reason": override.reason,
        "expires_at": override.expires_at.isoformat() if override.expires_at else None,
    }


def _target(flag: Flag) -> str:
    return f"flag:{flag.project.slug}/{flag.key}"


def _record(*, flag: Flag, actor: str, action: str, before: dict, after: dict, why: str) -> FlagChange:
    """History, audit and version bump: one transaction with the change itself."""
    change = FlagChange.objects.create(flag=flag, actor=actor, action=action, before=before, after=after, why=why)
    audit_record(
        actor=actor,
        action=f"flag.{action}",
        target=_target(flag),
        detail={"before": before, "after": after, "why": why, "flag_change": change.pk},
    )
    SnapshotVersion.objects.get_or_create(project_id=flag.project_id)
    # A row lock held to commit: version order is commit order (see SnapshotVersion).
    SnapshotVersion.objects.filter(project_id=flag.project_id).update(version=F("version") + 1)
    evaluate.snapshot_changed(project_id=flag.project_id)
    return change


def _locked(flag: Flag) -> Flag:
    """The current row, locked: concurrent changes to one flag queue, so each `before` is true."""
    return Flag.objects.select_related("project").select_for_update(of=("self",)).get(pk=flag.pk)


def flag_create(
    *,
    project: Project,
    key: str,
    actor: str,
    why: str = "",
    description: str = "",
    enabled: bool = False,
    rollout_percentage: int = 0,
    group_id: str = "",
    status: str = FlagStatus.STABLE,
) -> Flag:
    if key in RESERVED_KEYS:
        raise ValidationError({"key": f'"{key}" is reserved.'})
    flag = Flag(
        project=project,
        key=key,
        description=description,
        enabled=enabled,
        rollout_percentage=rollout_percentage,
        group_id=group_id or key,
        status=status,
        created_by=actor,
    )
    flag.full_clean()
    with transaction.atomic():
        flag.save()
        _record(flag=flag, actor=actor, action="create", before={}, after=_state(flag), why=why)
    return flag


def flag_update(*, flag: Flag, changes: Mapping[str, Any], actor: str, why: str) -> Flag:
    """Apply `changes` (fields of EDITABLE). Returns the saved flag; nothing is written when no
    value actually changes."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValidationError({field: "Not editable here." for field in sorted(unknown)})
    with transaction.atomic():
        current = _locked(flag)
        before = fields_read(current, changes)
        for field, value in changes.items():
            setattr(current, field, value)
        if "group_id" in changes and not current.group_id:
            current.group_id = current.key
        current.full_clean()  # also turns form and JSON values into the fields' types
        diff = changes_between(before, fields_read(current, changes))
        changed = list(diff["after"])
        if not changed:
            return current
        current.updated_at = timezone.now()
        current.save(update_fields=[*changed, "updated_at"])
        _record(
            flag=current,
            actor=actor,
            action="update",
            before=diff["before"],
            after=diff["after"],
            why=why,
        )
    return current


def flag_kill(*, flag: Flag, actor: str, why: str) -> Flag:
    """The kill switch: off for everyone at once, overrides included. Killing a killed flag
    changes nothing and records nothing."""
    with transaction.atomic():
        current = _locked(flag)
        if current.killed:
            return current
        now = timezone.now()
        current.killed, current.killed_at, current.killed_by, current.updated_at = True, now, actor, now
        current.save(update_fields=["killed", "killed_at", "killed_by", "updated_at"])
        _record(flag=current, actor=actor, action="kill", before={"killed": False}, after={"killed": True}, why=why)
    return current


def flag_revive(*, flag: Flag, actor: str, why: str) -> Flag:
    """Release the kill switch: the flag's own settings apply again."""
    with transaction.atomic():
        current = _locked(flag)
        if not current.killed:
            return current
        before = {"killed": True, "killed_at": current.killed_at.isoformat() if current.killed_at else None,
                  "killed_by": current.killed_by}  # fmt: skip
        current.killed, current.killed_at, current.killed_by, current.updated_at = False, None, "", timezone.now()
        current.save(update_fields=["killed", "killed_at", "killed_by", "updated_at"])
        _record(flag=current, actor=actor, action="revive", before=before, after={"killed": False}, why=why)
    return current


def override_set(
    *, flag: Flag, user_id: str, enabled: bool, actor: str, why: str = "", expires_at: datetime | None = None
) -> Override:
    """Force the flag on or off for one user (replacing any override they had); `why` is kept
    as the override's reason. An override does not beat the kill switch."""
    with transaction.atomic():
        current = _locked(flag)
        existing = Override.objects.filter(flag=current, user_id=user_id).first()
        before = _override_state(existing)
        override = existing or Override(flag=current, user_id=user_id, created_by=actor)
        override.enabled, override.reason, override.expires_at = enabled, why, expires_at
        override.full_clean()
        override.save()
        after = _override_state(override)
        if before != after:
            _record(flag=current, actor=actor, action="override.set", before=before, after=after, why=why)
    return override


def override_clear(*, flag: Flag, user_id: str, actor: str, why: str = "") -> bool:
    """Remove the user's override; False when they had none."""
    with transaction.atomic():
        current = _locked(flag)
        existing = Override.objects.filter(flag=current, user_id=user_id).first()
        if existing is None:
            return False
        before = _override_state(existing)
        existing.delete()
        _record(flag=current, actor=actor, action="override.clear", before=before, after={}, why=why)
    return True
