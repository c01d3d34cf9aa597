"""Progressive rollout of a Change behind its flag: canary (the affected user) → partial (a share
of users) → full (everyone) → done. Every phase is watched; a degradation kills the flag, aborts
the Change, raises its issue's severity a level and alerts the owner. Promotions past what the owner's
PromotionPolicy allows wait for their approval. Once either end is committed, healing.loop.outcomes
takes the issue on from there (resolved and learned from, or escalated).

Delivery. The end of each phase is a `flags.tasks.rollout_advance` task published (by name) after commit
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

Starting is flags.rollout.start. Whether a phase is healthy is flags.rollout.health; whether
Kaizen may promote it by itself is the promotion policy, flags.rollout.promotion. What a finished
or rolled-back rollout means for the Change and its issue is healing's: the engine says so through
flags.rollout.signals.
"""

import enum
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from flags import services
from flags.models import ACTIVE_PHASES, ApprovalState, FlagStatus, Rollout, RolloutPhase, RolloutStep
from flags.rollout import signals
from flags.rollout.health import Health, phase_exposure, rollout_health
from flags.rollout.promotion import policy_check
from healing.audit import AUTOMATIC, audit_record
from healing.models import Change, ChangeStatus, Issue
from kaizen_site.celery import broker_errors, task_publish
from notifications.owner_alert import EventType, owner_alert

logger = logging.getLogger("kaizen.rollout")

P = RolloutPhase
QUEUE = "ops"
ADVANCE_TASK = "flags.tasks.rollout_advance"
NEXT_PHASE = {P.CANARY: P.PARTIAL, P.PARTIAL: P.FULL, P.FULL: P.DONE}
# The report fields the partial phase would target on (see rollout_start).
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


# --- Advancing ----------------------------------------------------------------------------------


def _target(rollout: Rollout) -> str:
    return f"rollout:{rollout.change.key}"


def _visibility_timeout() -> int | None:
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")


def _schedule(*, rollout_id: int, phase: str, seconds: int) -> None:
    """Publish the phase's end after commit. Losing it is survivable (the sweep ends the phase
    anyway), so a broker error is logged, not raised into the commit."""
    timeout = _visibility_timeout()
    if timeout is not None and seconds > timeout - ETA_MARGIN_SECONDS:
        logger.info("phase longer than the broker's visibility timeout: the sweep ends it", extra={"seconds": seconds})
        return

    def publish() -> None:
        try:
            task_publish(ADVANCE_TASK, args=[rollout_id, phase], countdown=seconds, queue=QUEUE)
        except broker_errors() as exc:
            logger.warning(
                "rollout step not scheduled; the sweep advances it", extra={"rollout": rollout_id, "error": str(exc)}
            )

    transaction.on_commit(publish)


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
            # Everyone has it now; the overrides of the canary and of the users reached since would
            # only hide a later change to the flag. None is reached past the partial phase, so the
            # rollout as loaded in its full phase names them all.
            for user_id in sorted({rollout.affected_user_id, *rollout.reached_users}):
                services.override_clear(flag=flag, user_id=user_id, actor=actor, why=flag_why)
            signals.rollout_completed.send(sender=Rollout, change=change, actor=actor, why=step_why)
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
        # The Change aborted, the issue's severity raised and its work sent again: healing's side.
        signals.rollout_rolled_back.send(sender=Rollout, rollout=rollout, change=change, actor=actor, why=why, now=now)
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
