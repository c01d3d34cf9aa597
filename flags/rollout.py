"""Progressive rollout of a Change behind its flag: canary (the affected user) → partial (a share
of users) → full (everyone) → done. Every phase is watched; a degradation kills the flag, aborts
the Change, raises its issue's severity a level and alerts the owner. Promotions past what the owner's
PromotionPolicy allows wait for their approval. Once either end is committed, healing.outcomes
takes the issue on from there (resolved and learned from, or escalated).

Delivery. The end of each phase is a `flags.tasks.rollout_advance` task published after commit
with a countdown of the phase's duration. That is only the fast path: a worker holds an ETA task
unacknowledged until it is due, so a worker lost while waiting gives the message back only after
the broker's visibility timeout (Redis: 3600 s), and a phase longer than that timeout would be
redelivered to a second worker while the first still waits. `rollouts_sweep` (beat, every 30 s)
is what makes phases of any length safe: it advances every rollout whose phase is overdue, and
runs the health check of every phase in progress, so a degradation is rolled back within ~30 s
rather than at the phase's end. A phase longer than the visibility timeout gets no ETA task; the
sweep ends it.

Both paths claim a step with a conditional UPDATE on (id, phase=expected), in the transaction
that applies it: whichever comes second (a duplicate task, a stale one from an earlier phase, the
sweep racing the ETA task) changes nothing. Each step is a RolloutStep row, unique per move.

Whether a phase is healthy is flags.health; whether Kaizen may promote it by itself is the
promotion policy, flags.promotion.
"""

import enum
import logging
import math
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healing import outbox, outcomes
from healing.audit import AUTOMATIC, audit_record
from healing.changes import ChangeTransitionError, change_transition
from healing.classify import Impact, severity_raise
from healing.models import Change, ChangeStatus, EnqueueState, Issue, Occurrence
from notifications.owner_alert import EventType, owner_alert

from . import services
from .health import Health, error_rate_before, phase_exposure, rollout_health
from .models import ACTIVE_PHASES, ApprovalState, Flag, FlagStatus, Rollout, RolloutPhase, RolloutStep
from .promotion import policy_check

logger = logging.getLogger("kaizen.rollout")

P = RolloutPhase
QUEUE = "ops"
NEXT_PHASE = {P.CANARY: P.PARTIAL, P.PARTIAL: P.FULL, P.FULL: P.DONE}
# The report fields the partial phase would target on (see rollout_start).
TARGET_KEY = re.compile(r"plan|tier|config|subscription", re.IGNORECASE)
# An ETA task must be due well before the broker hands its message to another worker.
ETA_MARGIN_SECONDS = 60


class RolloutError(Exception):
    """A rollout request that cannot be carried out; the message says why."""


class Outcome(enum.StrEnum):
    STALE = "stale"  # the rollout is not in the expected phase (any more): nothing done
    NOT_DUE = "not_due"
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTED = "promoted"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


# --- Starting -----------------------------------------------------------------------------------


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
        change_transition(change=change, to=ChangeStatus.CANARY, actor=actor, why=why)
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


# --- Advancing ----------------------------------------------------------------------------------


def _target(rollout: Rollout) -> str:
    return f"rollout:{rollout.change.key}"


def _visibility_timeout() -> int | None:
    return (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("visibility_timeout")


def _schedule(*, rollout_id: int, phase: str, seconds: int) -> None:
    """Publish the phase's end after commit. Losing it is survivable (the sweep ends the phase
    anyway), so a broker error is logged, not raised into the commit."""
    timeout = _visibility_timeout()
    if timeout is not None and seconds > timeout - ETA_MARGIN_SECONDS:
        logger.info("phase longer than the broker's visibility timeout: the sweep ends it", extra={"seconds": seconds})
        return

    def publish() -> None:
        from kaizen_site.celery import app

        from .tasks import rollout_advance

        connection = app.connection_for_write()
        broker_errors = (OSError, *connection.connection_errors, *connection.channel_errors)
        try:
            rollout_advance.apply_async(args=[rollout_id, phase], countdown=seconds, queue=QUEUE)
        except broker_errors as exc:
            logger.warning(
                "rollout step not scheduled; the sweep advances it", extra={"rollout": rollout_id, "error": str(exc)}
            )

    transaction.on_commit(publish)


def _after_commit(hook, **kwargs) -> None:
    """The issue's side of a finished rollout (resolved and learned, or escalated and its pattern
    weakened) belongs to healing.outcomes, run once the rollout's own record is committed. Its
    moves are claims, so running one twice is harmless; a failure there is logged and cannot
    undo the rollout (robust), least of all a kill."""
    transaction.on_commit(lambda: hook(**kwargs), robust=True)


def _load(rollout_id: int) -> Rollout | None:
    return Rollout.objects.select_related("change", "flag__project", "issue").filter(pk=rollout_id).first()


def rollout_advance(
    *,
    rollout_id: int,
    expected_phase: str,
    now: datetime | None = None,
    approved_by: str = "",
    why: str = "",
    resend_if_early: bool = False,
) -> Outcome:
    """Check the rollout's health and, once its phase is over, promote it (policy permitting).

    Called by the phase's ETA task, by the sweep, and by the owner's approval (`approved_by`);
    does nothing unless the rollout is still in `expected_phase`. The ETA task passes
    `resend_if_early`: fired before the phase's end (timer rounding, clocks of two hosts), it
    sends itself again for the rest rather than leave the phase to the next sweep.
    """
    now = now or timezone.now()
    rollout = _load(rollout_id)
    if rollout is None or rollout.phase != expected_phase:
        return Outcome.STALE
    change_status = Change.objects.filter(pk=rollout.change_id).values_list("status", flat=True).first()
    if change_status == ChangeStatus.ABORTED:
        # Aborted in the console while rolling out: its flag must not stay on. (Marked complete
        # by hand instead, the rollout carries on to 100 % and just leaves the status alone.)
        why = f"{rollout.change.key} was aborted outside its rollout"
        return _rollback(rollout=rollout, why=why, actor=AUTOMATIC, health=None, now=now)
    if rollout.flag.killed:
        # Someone pulled the kill switch: promoting a dead flag would only report a false success.
        why = f"flag {rollout.flag.key} was killed outside its rollout"
        return _rollback(rollout=rollout, why=why, actor=AUTOMATIC, health=None, now=now)
    health = rollout_health(rollout=rollout, now=now)
    Rollout.objects.filter(pk=rollout.pk, phase=expected_phase).update(
        phase_new_occurrences=health.watched_new, health_notes=health.summary(), health_checked_at=now
    )
    if health.degraded:
        return _rollback(rollout=rollout, why="; ".join(health.reasons), actor=AUTOMATIC, health=health, now=now)
    ends = rollout.phase_started_at + timedelta(seconds=rollout.phase_seconds())
    if now < ends:
        if resend_if_early:
            _schedule(rollout_id=rollout.pk, phase=expected_phase, seconds=math.ceil((ends - now).total_seconds()))
        return Outcome.NOT_DUE
    to_phase = NEXT_PHASE[expected_phase]
    if to_phase != P.DONE and not approved_by:
        decision = policy_check(rollout=rollout, to_phase=to_phase, now=now)
        if not decision.allowed:
            _await_approval(rollout=rollout, to_phase=to_phase, reasons=list(decision.reasons), now=now)
            return Outcome.AWAITING_APPROVAL
    return _promote(rollout=rollout, to_phase=to_phase, health=health, approved_by=approved_by, why=why, now=now)


def _await_approval(*, rollout: Rollout, to_phase: str, reasons: list[str], now: datetime) -> None:
    newly = rollout.approval_state != ApprovalState.AWAITING
    with transaction.atomic():
        # Written (and audited) only when the reasons change: the sweep asks again every 30 s.
        changed = (
            Rollout.objects.filter(pk=rollout.pk, phase=rollout.phase)
            .exclude(approval_state=ApprovalState.AWAITING, approval_reasons=reasons)
            .update(
                approval_state=ApprovalState.AWAITING,
                approval_reasons=reasons,
                approval_requested_at=now if newly else rollout.approval_requested_at,
            )
        )
        if not changed:
            return
        detail = {"to": to_phase, "reasons": reasons}
        audit_record(actor=AUTOMATIC, action="rollout.awaiting_approval", target=_target(rollout), detail=detail)
        if newly:
            _alert_owner(rollout=rollout, kind="approval_needed", message=f"Approve {to_phase}?", detail=detail)


def _promote(*, rollout: Rollout, to_phase: str, health: Health, approved_by: str, why: str, now: datetime) -> Outcome:
    from_phase, actor = rollout.phase, approved_by or AUTOMATIC
    flag, change = rollout.flag, rollout.change
    with transaction.atomic():
        watched_count = (
            Issue.objects.filter(pk=rollout.issue_id).values_list("occurrence_count", flat=True).first() or 0
        )
        claimed = Rollout.objects.filter(pk=rollout.pk, phase=from_phase).update(
            phase=to_phase,
            phase_started_at=now,
            exposure_percentage=phase_exposure(rollout, to_phase),
            watched_count_at_phase_start=watched_count,
            phase_new_occurrences=0,
            approval_state=ApprovalState.NONE,
            approval_reasons=[],
            approval_requested_at=None,
            finished_at=now if to_phase == P.DONE else None,
        )
        if not claimed:
            return Outcome.STALE
        step_why = why or f"{from_phase} passed: {health.summary()}"
        if to_phase == P.PARTIAL:
            changes = {"rollout_percentage": rollout.partial_percentage}
        elif to_phase == P.FULL:
            changes = {"rollout_percentage": 100, "status": FlagStatus.MONITORING}
        else:
            changes = {"status": FlagStatus.STABLE}
        flag_why = f"Rollout of {change.key}: {from_phase} → {to_phase}"
        services.flag_update(flag=flag, changes=changes, actor=actor, why=flag_why)
        if to_phase == P.DONE:
            # Everyone has it now; the canary's override would only hide a later change to the flag.
            services.override_clear(flag=flag, user_id=rollout.affected_user_id, actor=actor, why=flag_why)
            change.status = Change.objects.filter(pk=change.pk).values_list("status", flat=True).get()
            if change.status == ChangeStatus.CANARY:
                change_transition(change=change, to=ChangeStatus.COMPLETE, actor=actor, why=f"Rolled out: {step_why}")
            _after_commit(outcomes.change_completed, change_id=change.pk)
        outcome = "approved" if approved_by else "completed" if to_phase == P.DONE else "promoted"
        RolloutStep.objects.create(
            rollout=rollout,
            from_phase=from_phase,
            to_phase=to_phase,
            at=now,
            actor=actor,
            outcome=outcome,
            why=step_why,
            metrics=health.metrics(),
        )
        if approved_by:
            audit_record(
                actor=approved_by,
                action="rollout.approve",
                target=_target(rollout),
                detail={"from": from_phase, "to": to_phase, "overridden": rollout.approval_reasons, "why": why},
            )
        action = "rollout.complete" if to_phase == P.DONE else "rollout.promote"
        audit_record(actor=actor, action=action, target=_target(rollout), detail={"from": from_phase, "to": to_phase})
        if to_phase != P.DONE:
            _schedule(rollout_id=rollout.pk, phase=to_phase, seconds=rollout.phase_seconds(to_phase))
    rollout.phase, rollout.phase_started_at = to_phase, now
    logger.info("rollout %s: %s → %s", change.key, from_phase, to_phase)
    return Outcome.DONE if to_phase == P.DONE else Outcome.PROMOTED


def rollout_approve(*, rollout: Rollout, actor: str, why: str, now: datetime | None = None) -> Outcome:
    """The owner overrides the policy for the promotion the rollout waits on (recorded in the
    audit log with the reasons overridden). Its health is still checked first."""
    current = _load(rollout.pk)
    if current is None or current.approval_state != ApprovalState.AWAITING:
        raise RolloutError(f"{rollout.change.key}'s rollout is not awaiting approval.")
    return rollout_advance(
        rollout_id=current.pk,
        expected_phase=current.phase,
        now=now,
        approved_by=actor,
        why=why or "Approved by the owner.",
    )


# --- Rolling back -------------------------------------------------------------------------------


# A rollback means the fix failed in front of users; an approval request waits for the owner's review.
ALERT_EVENTS = {"rollback": EventType.AUTO_FIX_FAILED, "approval_needed": EventType.ENHANCEMENT_READY}


def _alert_owner(*, rollout: Rollout, kind: str, message: str, detail: dict[str, Any]) -> None:
    text = f"{rollout.change.key} ({rollout.flag.key}): {message}"
    severity = Issue.objects.filter(pk=rollout.issue_id).values_list("severity", flat=True).first() or "P1"
    owner_alert(
        kind=ALERT_EVENTS[kind], severity=severity, target=_target(rollout), title=f"{rollout.change.key}: {message}",
        body=text, dedupe_key=f"{_target(rollout)}:{kind}", detail={"kind": kind, "message": text, **detail},
    )  # fmt: skip
    log = logger.error if kind == "rollback" else logger.warning
    log("owner alert: %s", text, extra={"kind": kind, "change": rollout.change.key})


def _rollback(*, rollout: Rollout, why: str, actor: str, health: Health | None, now: datetime | None) -> Outcome:
    """Kill the flag, abort the Change, raise the issue's severity, alert the owner: one
    transaction, claimed from whatever active phase the rollout is in (a degradation seen in
    one phase is no less real if the rollout moved on meanwhile)."""
    change, flag, now = rollout.change, rollout.flag, now or timezone.now()
    with transaction.atomic():
        # Locked, then updated: the step must name the phase actually left.
        active = Rollout.objects.select_for_update().filter(pk=rollout.pk, phase__in=ACTIVE_PHASES)
        from_phase = active.values_list("phase", flat=True).first()
        if from_phase is None:
            return Outcome.STALE
        Rollout.objects.filter(pk=rollout.pk).update(
            phase=P.ROLLED_BACK,
            exposure_percentage=0,
            finished_at=now,
            approval_state=ApprovalState.NONE,
            approval_reasons=[],
            health_notes=f"Rolled back: {why}",
        )
        services.flag_kill(flag=flag, actor=actor, why=f"Rollout of {change.key} rolled back: {why}")
        current = Change.objects.get(pk=change.pk)
        if current.status != ChangeStatus.ABORTED:
            try:
                change_transition(change=current, to=ChangeStatus.ABORTED, actor=actor, why=f"Rolled back: {why}")
            except ChangeTransitionError as exc:  # complete is final: the flag is off all the same
                logger.warning("rolled back change not aborted: %s", exc)
        if rollout.issue_id:
            # The severity only, one level: users exposed to the fix met a degradation. The issue's
            # stage (and what its user is told) is healing's, moved by the change_rolled_back
            # hook below.
            severity_raise(issue_id=rollout.issue_id, impact=Impact.ROLLBACK, actor=actor,
                           why=f"Rollout of {change.key} rolled back: {why}")  # fmt: skip
            Issue.objects.filter(pk=rollout.issue_id).update(enqueue_state=EnqueueState.PENDING, enqueued_at=now)
            # As the store does: pending in this transaction, published after commit; if the
            # broker is down the outbox's re-enqueue (beat) sends it later.
            issue_id = str(rollout.issue_id)
            severity = Issue.objects.filter(pk=rollout.issue_id).values_list("severity", flat=True).get()
            transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue={issue_id: severity}))
        RolloutStep.objects.create(
            rollout=rollout,
            from_phase=from_phase,
            to_phase=P.ROLLED_BACK,
            at=now,
            actor=actor,
            outcome="rolled_back",
            why=why,
            metrics=health.metrics() if health else {},
        )
        audit_record(
            actor=actor, action="rollout.rollback", target=_target(rollout), detail={"from": from_phase, "why": why}
        )
        _after_commit(outcomes.change_rolled_back, change_id=change.pk, why=why)
        _alert_owner(
            rollout=rollout,
            kind="rollback",
            message=f"rolled back and flag killed: {why}",
            detail={"issue": str(rollout.issue_id) if rollout.issue_id else None},
        )
    rollout.phase = P.ROLLED_BACK
    return Outcome.ROLLED_BACK


def rollout_rollback(*, rollout: Rollout, why: str, actor: str = AUTOMATIC, now: datetime | None = None) -> Rollout:
    """Roll back now, from any active phase (the console's "roll back now")."""
    current = _load(rollout.pk)
    if current is None or current.phase not in ACTIVE_PHASES:
        raise RolloutError(
            f"{rollout.change.key}'s rollout is {current.phase if current else 'gone'}: nothing to roll back."
        )
    outcome = _rollback(rollout=current, why=why or "Rolled back by hand.", actor=actor, health=None, now=now)
    if outcome != Outcome.ROLLED_BACK:
        raise RolloutError(f"{rollout.change.key}'s rollout finished meanwhile: nothing to roll back.")
    current.refresh_from_db()
    return current


# --- The sweep ----------------------------------------------------------------------------------


def rollouts_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Every rollout in progress: health checked, overdue phases advanced. Outcomes counted."""
    counts: dict[str, int] = {}
    for rollout_id, phase in Rollout.objects.filter(phase__in=ACTIVE_PHASES).values_list("pk", "phase"):
        try:
            outcome = str(rollout_advance(rollout_id=rollout_id, expected_phase=phase, now=now))
        except Exception:
            # One broken rollout must not stall the others; it is retried on the next sweep.
            logger.exception("rollout sweep failed for one rollout", extra={"rollout": rollout_id})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
