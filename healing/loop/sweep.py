"""The deadline sweep: no issue is left in a stage whose work stopped.

Each working stage has a deadline (healing.loop.stages, from KAIZEN_STAGE_DEADLINES). Celery redelivers
a task whose worker died, but the redelivered task finds the stage already taken and returns; and a
worker killed outright gives its message back only after the broker's visibility timeout. So the
sweep (beat, every minute, on the ops queue) looks for issues past their deadline and claims each
one with a conditional UPDATE on (stage, deadline): a second sweep racing it changes nothing. The
claim renews the deadline and counts the attempt; the stage's work is then resumed by a task on
the issue's severity queue, or, after KAIZEN_STAGE_RESUMES attempts, the issue is escalated with
the reason. Deadlines outlast the task time limit, so the worker that had the stage is gone.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from healing.loop import outcomes, pipeline
from healing.loop.stages import WORKING, issue_move
from healing.models import Change, ChangeStatus, Issue, Stage
from kaizen_site.celery import broker_errors, task_publish

logger = logging.getLogger("kaizen.sweep")

SWEEP_BATCH = 500
RESUME_TASK = "healing.tasks.resume_issue"
# A resumed stage restarts from `detected` when no Change holds its progress yet.
RESTART_STAGES = (Stage.DIAGNOSING, Stage.ROOT_CAUSE_FOUND)


def stage_deadlines_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Claim every issue past its stage's deadline: resume it, or escalate it. Outcomes counted."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    overdue = (
        Issue.objects.filter(stage__in=WORKING, stage_deadline__lt=now)
        .order_by("stage_deadline")
        .values_list("pk", "stage", "stage_deadline", "stage_attempts", "severity")[:SWEEP_BATCH]
    )
    for pk, stage, deadline, attempts, severity in overdue:
        try:
            outcome = _sweep_one(issue_id=pk, stage=stage, deadline=deadline, attempt=attempts + 1,
                                 severity=severity, now=now)  # fmt: skip
        except Exception:
            # One broken issue must not stall the others; its deadline is still past next time.
            logger.exception("deadline sweep failed for one issue", extra={"issue": str(pk)})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _sweep_one(
    *, issue_id: uuid.UUID, stage: str, deadline: datetime, attempt: int, severity: str, now: datetime
) -> str:
    allowed = settings.KAIZEN_STAGE_DEADLINES[stage]
    with transaction.atomic():
        claimed = Issue.objects.filter(pk=issue_id, stage=stage, stage_deadline=deadline).update(
            stage_attempts=F("stage_attempts") + 1, stage_deadline=now + timedelta(seconds=allowed)
        )
        if not claimed:
            return "stale"  # moved on, or another sweep took it
        if stage == Stage.NEEDS_INPUT or attempt > settings.KAIZEN_STAGE_RESUMES:
            transaction.on_commit(lambda: _give_up(issue_id=issue_id, stage=stage, attempts=attempt - 1,
                                                   allowed=allowed))  # fmt: skip
            return "escalated"
        transaction.on_commit(lambda: _publish(issue_id=issue_id, stage=stage, attempt=attempt, severity=severity))
    logger.warning("stage past its deadline: resuming", extra={"issue": str(issue_id), "stage": stage})
    return "resumed"


def _publish(*, issue_id: uuid.UUID, stage: str, attempt: int, severity: str) -> None:
    """Send the resumption. A broker that is down costs this attempt: the deadline passes again."""
    try:
        task_publish(RESUME_TASK, args=[str(issue_id), stage, attempt], queue=severity)
    except broker_errors() as exc:
        logger.warning("resumption not sent; the next sweep tries again", extra={"issue": str(issue_id),
                                                                                 "error": str(exc)})  # fmt: skip


def _give_up(*, issue_id: uuid.UUID, stage: str, attempts: int, allowed: int) -> None:
    issue = Issue.objects.select_related("project").get(pk=issue_id)
    if stage == Stage.NEEDS_INPUT:
        why = f"No answer from the user within {timedelta(seconds=allowed)}."
    else:
        why = (
            f"The {stage} stage did not finish within its {timedelta(seconds=allowed)} deadline, "
            f"{attempts + 1} times ({attempts} resumption(s)): its work keeps stopping."
        )
    change = _open_change(issue)
    if change is not None and change.status != ChangeStatus.CANARY:
        outcomes.change_abort(change=change, why=why)  # nothing half-applied stays in place
    outcomes.issue_escalate(issue=issue, expected=stage, why=why, change=change)


def _open_change(issue: Issue) -> Change | None:
    return (
        Change.objects.filter(issue=issue, status__in=(*outcomes.OPEN_FIX_STATUSES, ChangeStatus.CANARY))
        .order_by("-number")
        .first()
    )


def issue_resume(*, issue_id: str, stage: str, attempt: int) -> str:
    """Run the work of `stage` again for an issue the sweep claimed (attempt `attempt`). Does
    nothing when the issue has moved on or a later sweep superseded this attempt."""
    issue = Issue.objects.select_related("project").filter(pk=issue_id).first()
    if issue is None or issue.stage != stage or issue.stage_attempts != attempt:
        return "stale"
    why = f"resumed after the {stage} deadline passed (attempt {attempt})"
    if stage == Stage.DETECTED:
        pipeline.issue_heal(issue=issue)
        return "resumed"
    if stage in RESTART_STAGES:
        # No Change holds its progress yet, or one was being opened when the worker died.
        opened = Change.objects.filter(issue=issue, status__in=outcomes.OPEN_FIX_STATUSES)
        for change in opened.filter(created_at__gte=issue.stage_entered_at or timezone.now()):
            outcomes.change_abort(change=change, why=why)
        if issue_move(issue=issue, expected=stage, to=Stage.DETECTED, message="", detail=why):
            pipeline.issue_heal(issue=issue)
        return "restarted"
    # The stage's Change, finished or not: the worker may have died right after finishing it.
    change = Change.objects.filter(issue=issue).order_by("-number").first()
    if change is None:
        outcomes.issue_escalate(issue=issue, expected=stage, why=f"{why}, but it has no Change to take on")
        return "escalated"
    if stage == Stage.DEPLOYED and change.status in (ChangeStatus.CANARY, ChangeStatus.IN_REVIEW):
        return "waiting"  # its rollout is still under way (flags.rollout.engine sweeps it)
    pipeline.change_continue(issue=issue, change=change, stage=stage)
    return "resumed"
