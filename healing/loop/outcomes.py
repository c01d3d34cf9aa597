"""What a fix's end means for its issue: deployed to the affected user, mitigated (their case
fixed by a per-user step), resolved (the cause fixed: a verified change fully rolled out), aborted
or escalated. The pipeline reaches these ends as it heals; the rollout engine (flags.rollout.engine)
reports a finished or rolled-back rollout here after its own record is committed.

Whenever a Change aborts, every step it applied is undone, newest first (healing.remediation).
"""

import logging
from typing import Any

from django.utils import timezone
from prometheus_client import Histogram

from healing import metrics
from healing.audit import AUTOMATIC
from healing.changes.lifecycle import ChangeTransitionError, change_transition
from healing.loop.learning import incident_fix_failed, incident_learn
from healing.loop.rca import rca_draft_later
from healing.loop.stages import issue_move
from healing.models import Change, ChangeStatus, ErrorPattern, IncidentOutcome, Issue, Stage
from healing.remediation import change_steps_undo
from notifications.owner_alert import EventType, owner_alert

logger = logging.getLogger("kaizen.pipeline")

MTTR = Histogram(
    "kaizen_mttr_seconds",
    "Time from detection to fixed: for the affected user (canary or mitigation) and for everyone (resolved).",
    ["scope", "level"],
    buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
OPEN_FIX_STATUSES = (ChangeStatus.DRAFT, ChangeStatus.PLANNED, ChangeStatus.IN_PROGRESS, ChangeStatus.IN_REVIEW)


def diagnosis_of(change: Change) -> dict[str, Any]:
    """What the fix came from (level, pattern, affected user), as recorded when it was opened."""
    return change.scorecard.get("diagnosis") or {"level": "pattern", "pattern_id": None, "user_id": ""}


def level_of(change: Change) -> str:
    return (change.scorecard.get("verification") or {}).get("level") or "pattern"


def _since_first_seen(issue: Issue) -> float:
    first_seen = Issue.objects.filter(pk=issue.pk).values_list("first_seen", flat=True).get()
    return (timezone.now() - first_seen).total_seconds()


def issue_deployed(*, issue: Issue, change: Change, level: str, expected: str = Stage.VERIFYING) -> None:
    if issue_move(issue=issue, expected=expected, to=Stage.DEPLOYED, detail=change.key):
        MTTR.labels(scope="user", level=level).observe(_since_first_seen(issue))


def issue_mitigated(*, issue: Issue, change: Change, expected: str) -> None:
    """Fixed for the affected user by a per-user step: the cause is still there, so the issue is
    not resolved; the next report of it sends it back to work (see healing.ingest.store)."""

    if not issue_move(issue=issue, expected=expected, to=Stage.MITIGATED, detail=change.key):
        return
    MTTR.labels(scope="user", level=level_of(change)).observe(_since_first_seen(issue))
    pattern_id = diagnosis_of(change)["pattern_id"]
    pattern = ErrorPattern.objects.filter(pk=pattern_id).first() if pattern_id else None
    # Learned all the same: the next user who meets it is mitigated at once, without the LLM.
    incident_learn(change=change, pattern=pattern, outcome=IncidentOutcome.MITIGATED)
    metrics.FIXES.labels(outcome="mitigated", level=level_of(change)).inc()
    rca_draft_later(issue=issue, change=change)  # the cause still needs a person


def change_completed(*, change_id: int) -> None:
    """A Change's fix reached everyone: the issue is resolved and the incident learned."""

    change = Change.objects.select_related("issue").get(pk=change_id)
    _riders_complete(change)
    issue = change.issue
    # Escalated too: its rollout may outlast the deployed stage's deadline while awaiting approval.
    done_from = (Stage.DEPLOYED, Stage.ESCALATED)
    if issue is None or not issue_move(issue=issue, expected=done_from, to=Stage.RESOLVED, detail=change.key):
        return
    MTTR.labels(scope="full", level=level_of(change)).observe((timezone.now() - issue.first_seen).total_seconds())
    pattern_id = (change.scorecard.get("verification") or {}).get("pattern_id")
    incident_learn(change=change, pattern=ErrorPattern.objects.filter(pk=pattern_id).first() if pattern_id else None)
    metrics.FIXES.labels(outcome="resolved", level=level_of(change)).inc()
    rca_draft_later(issue=issue, change=change)  # P0/P1 only


def _riders_complete(change: Change) -> None:
    """Changes that rode this one's rollout are complete with it."""

    riders = Change.objects.filter(
        status=ChangeStatus.CANARY, flag_key=change.flag_key, scorecard__metrics__after__rides_rollout_of=change.key
    )
    for rider in riders:
        rider = change_transition(
            change=rider, to=ChangeStatus.COMPLETE, actor=AUTOMATIC, why=f"{change.key} rolled out"
        )
        change_completed(change_id=rider.pk)


def change_rolled_back(*, change_id: int, why: str) -> None:
    """The rollout saw a degradation and rolled back (it already killed the flag and raised the
    issue's severity): what the Change applied is undone, the issue aborted, the pattern weakened."""

    change = Change.objects.select_related("issue").get(pk=change_id)
    change_steps_undo(change=change, actor=AUTOMATIC, why=f"Rolled back: {why}")
    if change.issue is not None:
        issue_escalate(
            issue=change.issue,
            expected=(Stage.DEPLOYED, Stage.VERIFYING, Stage.ESCALATED),
            why=why,
            to=Stage.ABORTED,
            change=change,
        )
        incident_fix_failed(change=change)
    metrics.FIXES.labels(outcome="rolled_back", level=level_of(change)).inc()


def change_abort(*, change: Change, why: str, actor: str = AUTOMATIC) -> Change:
    """Abort the Change (unless it finished already) and undo every step it applied."""

    current = Change.objects.get(pk=change.pk)
    if current.status not in (ChangeStatus.ABORTED, ChangeStatus.COMPLETE):
        try:
            current = change_transition(change=current, to=ChangeStatus.ABORTED, actor=actor, why=why)
        except ChangeTransitionError as exc:  # moved meanwhile: what it applied is undone all the same
            logger.warning("change not aborted: %s", exc)
    change_steps_undo(change=current, actor=actor, why=why)
    return current


def fix_abort(*, issue: Issue, change: Change, expected: str, why: str) -> None:

    change = change_abort(change=change, why=why)
    issue_escalate(issue=issue, expected=expected, why=why, to=Stage.ABORTED, change=change)
    pattern_id = diagnosis_of(change)["pattern_id"]
    pattern = ErrorPattern.objects.filter(pk=pattern_id).first() if pattern_id else None
    incident_fix_failed(change=change, pattern=pattern)
    metrics.FIXES.labels(outcome="aborted", level=level_of(change)).inc()


def issue_escalate(
    *, issue: Issue, expected: str | tuple[str, ...], why: str, to: str = Stage.ESCALATED, change=None
) -> None:
    """A person is needed: the issue moves to a stage that says so, the owner is alerted and gets a
    draft RCA when the issue is P0/P1. The severity is left alone: it measures the problem's impact,
    not whether Kaizen could fix it (see healing.ingest.classify.severity_raise)."""

    if not issue_move(issue=issue, expected=expected, to=to, detail=why):
        return
    owner_alert(
        kind=EventType.AUTO_FIX_FAILED,
        severity=issue.severity,
        target=f"issue:{issue.pk}",
        title=issue.title,
        body=why,
        dedupe_key=f"issue:{issue.pk}:{to}",
        detail={"stage": to, "why": why, "severity": issue.severity},
    )
    logger.warning("issue escalated to the owner", extra={"issue": str(issue.pk), "stage": to, "why": why})
    rca_draft_later(issue=issue, change=change)
