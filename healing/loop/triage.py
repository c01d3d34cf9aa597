"""What the owner does to an incident from the console, beyond its fix: send it back to be
diagnosed again, or close it as "not a problem". Both move the issue only through `issue_move`
(a claim on the stage the page showed, so a pipeline move meanwhile wins) and are audited.
"""

from django.db import transaction
from django.utils import timezone

from healing.audit import NOT_A_PROBLEM, audit_record
from healing.ingest.outbox import issues_enqueue
from healing.loop.stages import MOVES, issue_move
from healing.models import EnqueueState, Issue, Stage

S = Stage

# Stages with no work of Kaizen's under way on the issue: it may be sent back to be diagnosed. An
# issue mid-fix has an open Change; it is aborted (or rolled back) first, not diagnosed over.
RETRYABLE = (S.DETECTED, S.NEEDS_INPUT, S.ESCALATED, S.ABORTED, S.MITIGATED, S.RESOLVED)
# Stages an issue may be closed from: everything MOVES lets reach `resolved`.
CLOSABLE = tuple(stage for stage, moves in MOVES.items() if S.RESOLVED in moves)


class TriageError(Exception):
    """The issue is not in a stage the action applies to; the message says why."""


def issue_diagnosis_retry(*, issue: Issue, actor: str) -> None:
    """Back to `detected` and queued for the pipeline, which diagnoses it afresh (the pattern
    library first, then the LLM). Queued through the outbox: if the broker is down the issue
    stays pending and `reenqueue_pending` sends it later."""
    if issue.stage not in RETRYABLE:
        raise TriageError(f"The issue is {issue.stage}: its fix is under way. Abort or roll back its change first.")
    with transaction.atomic():
        if issue.stage != S.DETECTED and not issue_move(
            issue=issue, expected=issue.stage, to=S.DETECTED, message="", actor=actor,
            detail=f"Diagnosis retried by {actor}.",
        ):  # fmt: skip
            raise TriageError("The issue moved meanwhile; reload the page.")
        Issue.objects.filter(pk=issue.pk).update(enqueue_state=EnqueueState.PENDING, enqueued_at=timezone.now())
        audit_record(actor=actor, action="issue.retry_diagnosis", target=f"issue:{issue.pk}",
                     detail={"from": issue.stage})  # fmt: skip
        severity = issue.severity
        transaction.on_commit(lambda: issues_enqueue(to_enqueue={str(issue.pk): severity}))


def issue_not_a_problem(*, issue: Issue, actor: str, why: str = "") -> bool:
    """Close as a false positive: counted in the false-positive ratio (/metrics) whether or not
    the issue could be closed from where it is (one mid-fix first has to stop). True if closed."""
    with transaction.atomic():
        closed = issue_move(issue=issue, expected=CLOSABLE, to=S.RESOLVED, message="", actor=actor,
                            detail=f"Not a problem: {actor}" + (f" ({why})" if why else ""))  # fmt: skip
        audit_record(actor=actor, action=NOT_A_PROBLEM, target=f"issue:{issue.pk}",
                     detail={"closed": bool(closed), **({"why": why} if why else {})})  # fmt: skip
    return closed
