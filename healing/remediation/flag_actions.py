"""Remediation through feature flags: the fix is already in the product behind a flag, and the
step turns it on (or off) for the affected user, sets the rollout, or pulls the kill switch.

Every change goes through flags.services, so it is in the flag's history and the audit log like
any other; undo puts back exactly the state the step found.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from pydantic import Field

from flags import services
from flags.models import KEY_PATTERN, Flag, Override
from healing.models import RiskLevel
from healing.remediation.base import Action, Outcome, Params, RemediationContext, RemediationError, register

FlagKey = Field(pattern=KEY_PATTERN, max_length=100)


class FlagParams(Params):
    flag: str = FlagKey


class ForUserParams(FlagParams):
    user_id: str | None = Field(None, min_length=1, max_length=200, description="Empty: the affected user.")


class RolloutParams(FlagParams):
    percentage: int = Field(ge=0, le=100)


def _flag(context: RemediationContext, key: str) -> Flag:
    project = context.target_project
    if project is None:
        raise RemediationError("No project: the step was run without an issue, a change or a project.")
    flag = Flag.objects.select_related("project").filter(project=project, key=key).first()
    if flag is None:
        raise RemediationError(f'No flag "{key}" in project {project.slug}.')
    return flag


def _flag_by_id(undo_data: Mapping[str, Any]) -> Flag:
    flag = Flag.objects.select_related("project").filter(pk=undo_data["flag_id"]).first()
    if flag is None:
        raise RemediationError(f"The flag (id {undo_data['flag_id']}) has been deleted since.")
    return flag


def _lock(flag: Flag) -> None:
    # Held to commit: the state read as "before" is the one the change replaces.
    Flag.objects.select_for_update().filter(pk=flag.pk).first()


def _override_state(override: Override | None) -> dict[str, Any] | None:
    if override is None:
        return None
    expires = override.expires_at.isoformat() if override.expires_at else None
    return {"enabled": override.enabled, "reason": override.reason, "expires_at": expires}


class _UserOverride(Action):
    Params = ForUserParams
    enabled: bool
    per_user = True

    def run(self, params: ForUserParams, context: RemediationContext) -> Outcome:
        flag = _flag(context, params.flag)
        user_id = params.user_id or context.user_id
        if not user_id:
            raise RemediationError("No user: the step names none and there is no affected user in the context.")
        with transaction.atomic():
            _lock(flag)
            before = _override_state(Override.objects.filter(flag=flag, user_id=user_id).first())
            services.override_set(
                flag=flag, user_id=user_id, enabled=self.enabled, actor=context.actor, why=context.why
            )
        state = "on" if self.enabled else "off"
        return Outcome(
            ok=True,
            detail=f"{flag.key} forced {state} for {user_id}.",
            undo_data={"flag_id": flag.pk, "user_id": user_id, "before": before},
            result={"flag": flag.key, "user_id": user_id, "enabled": self.enabled},
        )

    def undo(self, undo_data: Mapping[str, Any], context: RemediationContext) -> Outcome:
        flag, user_id, before = _flag_by_id(undo_data), undo_data["user_id"], undo_data["before"]
        if before is None:
            services.override_clear(flag=flag, user_id=user_id, actor=context.actor, why=f"Undo: {context.why}")
            return Outcome(ok=True, detail=f"{flag.key}: override for {user_id} removed.")
        expires = datetime.fromisoformat(before["expires_at"]) if before["expires_at"] else None
        services.override_set(
            flag=flag, user_id=user_id, enabled=before["enabled"], actor=context.actor, why=before["reason"],
            expires_at=expires,
        )  # fmt: skip
        return Outcome(ok=True, detail=f"{flag.key}: {user_id}'s earlier override put back.")


@register
class FlagEnableForUser(_UserOverride):
    name = "flag_enable_for_user"
    risk = RiskLevel.LOW
    summary = "Turn a flag on for one user (the affected user unless `user_id` is given)."
    enabled = True


@register
class FlagDisableForUser(_UserOverride):
    name = "flag_disable_for_user"
    risk = RiskLevel.LOW
    summary = "Turn a flag off for one user (the affected user unless `user_id` is given)."
    enabled = False


@register
class FlagSetRollout(Action):
    name = "flag_set_rollout"
    risk = RiskLevel.MEDIUM  # reaches users who never reported anything
    summary = "Set the share of users (0–100 %) who get a flag."
    Params = RolloutParams

    def exposure(self, params: RolloutParams) -> int:
        return params.percentage

    def run(self, params: RolloutParams, context: RemediationContext) -> Outcome:
        flag = _flag(context, params.flag)
        with transaction.atomic():
            _lock(flag)
            before = Flag.objects.values_list("rollout_percentage", flat=True).get(pk=flag.pk)
            if before == params.percentage:
                return Outcome(ok=True, detail=f"{flag.key} is at {before} % already.")
            services.flag_update(
                flag=flag, changes={"rollout_percentage": params.percentage}, actor=context.actor, why=context.why
            )
        return Outcome(
            ok=True,
            detail=f"{flag.key}: rollout {before} % → {params.percentage} %.",
            undo_data={"flag_id": flag.pk, "before": before},
            result={"flag": flag.key, "before": before, "after": params.percentage},
        )

    def undo(self, undo_data: Mapping[str, Any], context: RemediationContext) -> Outcome:
        flag = _flag_by_id(undo_data)
        services.flag_update(
            flag=flag, changes={"rollout_percentage": undo_data["before"]}, actor=context.actor,
            why=f"Undo: {context.why}",
        )  # fmt: skip
        return Outcome(ok=True, detail=f"{flag.key}: rollout back to {undo_data['before']} %.")


@register
class FlagKill(Action):
    name = "flag_kill"
    risk = RiskLevel.HIGH  # off for everyone at once, overrides included
    summary = "Pull a flag's kill switch."
    Params = FlagParams

    def exposure(self, params: FlagParams) -> int:
        return 100

    def run(self, params: FlagParams, context: RemediationContext) -> Outcome:
        flag = _flag(context, params.flag)
        with transaction.atomic():
            _lock(flag)
            if Flag.objects.values_list("killed", flat=True).get(pk=flag.pk):
                # Nothing changed, so nothing to undo: reviving it would undo someone else's kill.
                return Outcome(ok=True, detail=f"{flag.key} was killed already.")
            services.flag_kill(flag=flag, actor=context.actor, why=context.why)
        return Outcome(ok=True, detail=f"{flag.key} killed.", undo_data={"flag_id": flag.pk}, result={"flag": flag.key})

    def undo(self, undo_data: Mapping[str, Any], context: RemediationContext) -> Outcome:
        flag = services.flag_revive(flag=_flag_by_id(undo_data), actor=context.actor, why=f"Undo: {context.why}")
        return Outcome(ok=True, detail=f"{flag.key} revived.")
