"""A user's answer to a question the diagnosis asked (needs input): on the issue's timeline for
the owner and the next diagnosis, and the issue sent back to be diagnosed with it."""

from django.db import transaction
from django.utils import timezone

from healing.audit import audit_record
from healing.ingest import outbox
from healing.loop.stages import issue_move
from healing.models import EnqueueState, Issue, IssueEvent, Stage, UserSession

ANSWER_PREFIX = "The user answered: "


def needs_input_answer(*, issue: Issue, session: UserSession, text: str) -> bool:
    """Record `text` and, if the issue still waits for input, move it back to detected and queue
    it. Returns whether it was re-queued; an answer that comes after the issue moved on (another
    user answered first, the owner took over) is still recorded."""
    actor = f"session:{session.session_id[:12]}"
    detail = ANSWER_PREFIX + text.strip()
    with transaction.atomic():
        moved = issue_move(issue=issue, expected=Stage.NEEDS_INPUT, to=Stage.DETECTED, detail=detail, actor=actor)
        if moved:
            Issue.objects.filter(pk=issue.pk).update(enqueue_state=EnqueueState.PENDING, enqueued_at=timezone.now())
            to_enqueue = {str(issue.pk): issue.severity}
            # As the store does: pending now, published after commit, re-sent by the outbox if the broker is down.
            transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue=to_enqueue))
        else:
            # A note on the timeline at the stage the issue is in (no stage change: no status is sent).
            IssueEvent.objects.create(issue=issue, stage=issue.stage, message="", detail=detail)
            audit_record(actor=actor, action="issue.user_answer", target=f"issue:{issue.pk}", detail={"text": text})
    return moved
