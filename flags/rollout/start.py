"""Starting a rollout: the Change (verified, in review) goes to canary and its flag is turned on
for the affected user only; users who meet the same bug before the fix reaches them get it as the
canary did. Advancing and rolling back are flags.rollout.engine."""

import re
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from flags import services
from flags.models import ACTIVE_PHASES, Flag, FlagStatus, Rollout, RolloutStep
from flags.rollout import signals
from flags.rollout.engine import P, RolloutError, _schedule, _target
from flags.rollout.health import error_rate_before, exposed_user
from healing.audit import AUTOMATIC, audit_record
from healing.models import Change, ChangeStatus, Issue, Occurrence

# A user who reports the fixed issue in these phases may not have the fix yet.
REACHING_PHASES = (P.CANARY, P.PARTIAL)
# Plan and config attributes of the affected user's report, recorded with the canary.
TARGET_KEY = re.compile(r"plan|tier|config|subscription", re.IGNORECASE)


def _flag_for(change: Change) -> Flag:
    if not change.flag_key:
        raise RolloutError(f"{change.key} has no flag: set its flag_key before rolling it out.")
    flags = Flag.objects.select_related("project").filter(key=change.flag_key)
    if change.issue_id:
        flags = flags.filter(project_id=change.issue.project_id)
    found = list(flags[:2])
    if not found:
        where = f" in project {change.issue.project.slug}" if change.issue_id else ""
        raise RolloutError(f"{change.key}: no flag {change.flag_key}{where}; create it first.")
    if len(found) > 1:
        raise RolloutError(
            f"{change.key}: flag {change.flag_key} exists in several projects; link the change to its issue."
        )
    return found[0]


def _affected(issue: Issue | None, user_id: str) -> tuple[str, dict[str, Any]]:
    """The canary user and the plan/config attributes their report carried."""
    first = None
    if issue is not None:
        reports = Occurrence.objects.filter(issue=issue).exclude(user_id="").order_by("received_at", "id")
        first = reports.filter(user_id=user_id).first() if user_id else reports.first()
    if first is None:
        if not user_id:
            raise RolloutError("No affected user to canary on: the issue has no report with a user id; name one.")
        return user_id, {}
    payload = first.payload if isinstance(first.payload, dict) else {}
    attributes = {}
    for source in ("tags", "state"):
        values = payload.get(source)
        if isinstance(values, dict):
            attributes.update(
                {
                    key: value
                    for key, value in values.items()
                    if TARGET_KEY.search(key) and isinstance(value, str | int | float | bool)
                }
            )
    return first.user_id, attributes


def rollout_start(
    *,
    change: Change,
    actor: str,
    affected_user_id: str = "",
    canary_seconds: int = 5 * 60,
    partial_seconds: int = 30 * 60,
    full_seconds: int = 30 * 60,
    partial_percentage: int = 10,
    error_rate_threshold: float = 2.0,
    watched_allowance: int = 0,
    now: datetime | None = None,
) -> Rollout:
    """Start the canary: the Change (verified, in_review) moves to canary and its flag is turned
    on for the affected user only (by default the first user who reported the change's issue).

    Starting is not a promotion: it exposes only the user who has the bug already, so the
    promotion policy is first checked for the partial phase.

    The partial phase is a percentage of all users bucketed on the flag's group. The affected
    user's plan/config attributes are recorded, not targeted: targeting "users like them" needs
    constraints on flags, which do not exist yet.
    """
    now = now or timezone.now()
    durations = {"canary": canary_seconds, "partial": partial_seconds, "full": full_seconds}
    for name, seconds in durations.items():
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise RolloutError(f"The {name} phase must last a whole number of seconds above 0 (got {seconds!r}).")
    if not 1 <= partial_percentage <= 99:
        raise RolloutError(f"The partial phase's share must be 1–99 % (got {partial_percentage}).")
    if error_rate_threshold <= 0 or watched_allowance < 0:
        raise RolloutError("The error-rate threshold must be above 0 and the allowance 0 or more.")
    if Rollout.objects.filter(change=change).exists():
        raise RolloutError(f"{change.key} has been rolled out already; a new attempt is a new Change.")
    if change.status != ChangeStatus.IN_REVIEW:
        raise RolloutError(f"{change.key} is {change.status}: a rollout starts from in_review, once verified.")
    flag = _flag_for(change)
    if flag.killed:
        raise RolloutError(f"Flag {flag.key} is killed; release the kill switch first.")
    busy = Rollout.objects.filter(flag=flag, phase__in=ACTIVE_PHASES).select_related("change").first()
    if busy is not None:
        raise RolloutError(f"Flag {flag.key} is being rolled out by {busy.change.key}.")
    user_id, attributes = _affected(change.issue, affected_user_id)
    why = f"Canary of {change.key} for its affected user"
    with transaction.atomic():
        signals.rollout_started.send(sender=Rollout, change=change, actor=actor, why=why)
        flag = services.flag_update(
            flag=flag,
            changes={"enabled": True, "rollout_percentage": 0, "status": FlagStatus.TESTING},
            actor=actor,
            why=why,
        )
        services.override_set(flag=flag, user_id=user_id, enabled=True, actor=actor, why=why)
        issue = change.issue
        rollout = Rollout.objects.create(
            change=change,
            flag=flag,
            phase=P.CANARY,
            phase_started_at=now,
            canary_seconds=canary_seconds,
            partial_seconds=partial_seconds,
            full_seconds=full_seconds,
            partial_percentage=partial_percentage,
            affected_user_id=user_id,
            target_attributes=attributes,
            issue=issue,
            fingerprint=issue.fingerprint if issue else "",
            watched_count_at_phase_start=issue.occurrence_count if issue else 0,
            watched_allowance=watched_allowance,
            error_rate_threshold=error_rate_threshold,
            baseline_error_rate=error_rate_before(project_id=flag.project_id, before=now),
            created_by=actor,
            created_at=now,
        )
        RolloutStep.objects.create(
            rollout=rollout,
            from_phase="",
            to_phase=P.CANARY,
            at=now,
            actor=actor,
            outcome="started",
            why=why,
            metrics={"baseline_error_rate": rollout.baseline_error_rate, "target_attributes": attributes},
        )
        audit_record(
            actor=actor,
            action="rollout.start",
            target=_target(rollout),
            detail={"flag": flag.key, "user": user_id, "durations": durations, "partial": partial_percentage},
        )
        _schedule(rollout_id=rollout.pk, phase=P.CANARY, seconds=canary_seconds)
    return rollout


def rollout_reach(*, issue_users: dict[str, set[str]]) -> dict[str, list[str]]:
    """Users who report an issue whose fix is rolling out, and who are not yet among those the
    flag is on for, get it at once through an override, as the canary user did: they have the bug,
    and the fix was verified on it. Returns the users reached, per Change key.

    Called by the ingest store in its batch transaction, before the reporting sessions are told
    where their issue stands: the issue is deployed, and "Fixed" must be true for them too. The
    health check counts their later reports against the fix (flags.rollout.health); their
    overrides end with the rollout (flags.rollout.engine).
    """
    fixes = Change.objects.filter(issue_id__in=list(issue_users), status=ChangeStatus.CANARY).exclude(flag_key="")
    users_by_flag: dict[tuple[int, str], set[str]] = {}
    for issue_id, project_id, flag_key in fixes.values_list("issue_id", "issue__project_id", "flag_key"):
        users_by_flag.setdefault((project_id, flag_key), set()).update(issue_users[str(issue_id)])
    reached: dict[str, list[str]] = {}
    for (project_id, flag_key), users in sorted(users_by_flag.items()):
        # Locked: two consumers may reach users of the same rollout at once, and the engine
        # claims the row to move its phase.
        rollout = (
            Rollout.objects.select_for_update(of=("self",))
            .select_related("flag", "change")
            .filter(flag__project_id=project_id, flag__key=flag_key, phase__in=REACHING_PHASES)
            .first()
        )
        if rollout is None:  # at 100 % already, finished or rolled back
            continue
        exposed = exposed_user(rollout, rollout.phase)
        new = sorted(user_id for user_id in users if not exposed(user_id))
        if not new:
            continue
        why = f"{rollout.change.key} reaches a user who met the bug during its {rollout.phase} phase"
        for user_id in new:
            services.override_set(flag=rollout.flag, user_id=user_id, enabled=True, actor=AUTOMATIC, why=why)
        at = timezone.now().isoformat()
        rollout.reached_users.update(dict.fromkeys(new, at))
        Rollout.objects.filter(pk=rollout.pk).update(reached_users=rollout.reached_users)
        audit_record(actor=AUTOMATIC, action="rollout.reach", target=_target(rollout),
                     detail={"flag": flag_key, "phase": rollout.phase, "users": new})  # fmt: skip
        reached[rollout.change.key] = new
    return reached
