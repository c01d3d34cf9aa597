"""An issue's stages: the moves allowed between them, and how long the work of each stage may take
before the deadline sweep (healing.loop.sweep) steps in.

Every stage move goes through `issue_move`: checked against MOVES, applied with one conditional
UPDATE on the stage the caller expects (so a redelivered or concurrent task moves the issue once),
and recorded as an IssueEvent and in the audit log in the same transaction; once committed, the
event goes down the stream of every session that met the issue (healing.stream.fanout). Entering a
stage sets its deadline from the KAIZEN_STAGE_DEADLINES setting and clears the count of resumptions.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healing import messages
from healing.audit import AUTOMATIC, audit_record
from healing.models import Issue, IssueEvent, Severity, Stage
from healing.stream.fanout import issue_event_fanout

S = Stage

# Who may take an issue where. Back to `detected` is "heal it again": new reports after a fix or a
# mitigation, an owner re-queueing an escalated issue, a stage resumed from scratch by the sweep.
MOVES: dict[str, tuple[str, ...]] = {
    S.DETECTED: (S.DIAGNOSING, S.ESCALATED, S.RESOLVED),
    S.DIAGNOSING: (S.DETECTED, S.NEEDS_INPUT, S.ROOT_CAUSE_FOUND, S.ESCALATED),
    S.ROOT_CAUSE_FOUND: (S.FIXING, S.DETECTED, S.ESCALATED),
    S.NEEDS_INPUT: (S.DETECTED, S.ESCALATED, S.RESOLVED),
    S.FIXING: (S.VERIFYING, S.DETECTED, S.ABORTED, S.ESCALATED),
    S.VERIFYING: (S.DEPLOYED, S.MITIGATED, S.ABORTED, S.ESCALATED),
    S.DEPLOYED: (S.RESOLVED, S.MITIGATED, S.ABORTED, S.ESCALATED),
    S.MITIGATED: (S.DETECTED, S.RESOLVED, S.ESCALATED),
    S.RESOLVED: (S.DETECTED,),
    # The owner approved held steps (deployed, mitigated or aborted by them), re-queued it, or fixed it.
    S.ESCALATED: (S.DETECTED, S.DEPLOYED, S.MITIGATED, S.ABORTED, S.RESOLVED),
    S.ABORTED: (S.DETECTED, S.ESCALATED, S.RESOLVED),
}
# Stages where Kaizen's own work is under way: each has a deadline. The others wait for a person
# (escalated, aborted), or for nothing (resolved), or for new reports (mitigated).
WORKING = (S.DETECTED, S.DIAGNOSING, S.ROOT_CAUSE_FOUND, S.NEEDS_INPUT, S.FIXING, S.VERIFYING, S.DEPLOYED)


def user_message(*, stage: str, issue: Issue) -> str:
    """What the issue's timeline records the user is told at `stage` (healing.messages has the
    words; each session's stream fills in the user's own name)."""
    return messages.stage_message(stage=stage, issue_type=issue.type)


class StageMoveError(Exception):
    """A move MOVES does not allow; the message says which moves are."""

    def __init__(self, *, source: str, to: str) -> None:
        self.source, self.to = source, to
        allowed = ", ".join(MOVES.get(source, ())) or "none"
        super().__init__(f"An issue cannot move from {source} to {to}. Allowed from {source}: {allowed}.")


def stage_deadline(*, stage: str, severity: str, now: datetime) -> datetime | None:
    """When the work of `stage` must be done by; None for a stage nobody's work is due in.

    A detected P3 waits for the daily batch (its own schedule), not for a deadline."""
    if stage not in WORKING or (stage == S.DETECTED and severity == Severity.P3):
        return None
    seconds = settings.KAIZEN_STAGE_DEADLINES.get(stage)
    return now + timedelta(seconds=seconds) if seconds else None


def issue_move(
    *,
    issue: Issue,
    to: str,
    expected: str | Iterable[str] | None = None,
    detail: str = "",
    message: str | None = None,
    actor: str = AUTOMATIC,
) -> bool:
    """Move `issue` from one of the `expected` stages (default: the stage the caller read) to `to`.

    Returns False, changing nothing, when the issue is no longer in an expected stage (another
    task, the sweep or the owner moved it first). Raises StageMoveError for a move MOVES forbids.
    """
    sources = (issue.stage,) if expected is None else (expected,) if isinstance(expected, str) else tuple(expected)
    for source in sources:
        if to not in MOVES[source]:
            raise StageMoveError(source=source, to=to)
    now = timezone.now()
    fields = {
        "stage": to,
        "stage_entered_at": now,
        "stage_deadline": stage_deadline(stage=to, severity=issue.severity, now=now),
        "stage_attempts": 0,
        "resolved_at": now if to == S.RESOLVED else None,
    }
    with transaction.atomic():
        if len(sources) == 1:  # the usual move: the conditional UPDATE is the check, one round trip
            source = sources[0] if Issue.objects.filter(pk=issue.pk, stage=sources[0]).update(**fields) else None
        else:
            locked = Issue.objects.select_for_update().filter(pk=issue.pk, stage__in=sources)
            source = locked.values_list("stage", flat=True).first()
            if source is not None:
                Issue.objects.filter(pk=issue.pk).update(**fields)
        if source is None:
            return False
        text = user_message(stage=to, issue=issue) if message is None else message
        event = IssueEvent.objects.create(issue=issue, stage=to, message=text, detail=detail, created_at=now)
        issue_event_fanout(event=event)
        audit_record(
            actor=actor,
            action="issue.move",
            target=f"issue:{issue.pk}",
            detail={"from": source, "to": to, "why": detail},
        )
    for name, value in fields.items():
        setattr(issue, name, value)
    return True
