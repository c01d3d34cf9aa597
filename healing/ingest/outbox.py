"""Enqueueing issue work, with the database as the outbox.

The store marks an issue `pending` in the same transaction that writes its report; once the
broker has taken the task the issue is marked `sent`. If the broker is down, the ingest answer
is unaffected, the issue stays `pending`, and `reenqueue_pending` (every 30 s, from beat) sends
it again once the broker is back. process_issue is idempotent, so a task sent twice is harmless.
"""

import logging
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from healing import metrics
from healing.models import EnqueueState, Issue
from kaizen_site.celery import app, broker_errors, task_publish

logger = logging.getLogger("kaizen.outbox")

# Long enough that the publish right after commit has normally happened or failed by then.
PENDING_GRACE = timedelta(seconds=20)
REENQUEUE_BATCH = 1000
PROCESS_TASK = "healing.tasks.process_issue"


def issues_enqueue(*, to_enqueue: dict[str, str]) -> int:
    """Publish process_issue for each issue on its severity's queue; returns how many were sent."""
    if not to_enqueue:
        return 0
    try:
        # One pipelined round trip for the whole batch on Redis (kombu's publish batch); other
        # transports publish one by one. A failed flush leaves them all pending: sending one twice
        # later is harmless, process_issue is idempotent.
        with app.producer_or_acquire() as producer, producer.batch():
            declared: set[str] = set()
            for issue_id, severity in to_enqueue.items():
                task_publish(
                    PROCESS_TASK, args=[issue_id], queue=severity, producer=producer, declare=severity not in declared
                )
                declared.add(severity)
    except broker_errors() as exc:
        metrics.ISSUES_ENQUEUED.labels(queue="", outcome="broker_down").inc(len(to_enqueue))
        Issue.objects.filter(id__in=list(to_enqueue)).update(enqueue_attempts=F("enqueue_attempts") + 1)
        logger.warning(
            "broker unreachable; issues stay pending and will be re-enqueued",
            extra={"pending": len(to_enqueue), "error": str(exc)},
        )
        return 0
    for severity in to_enqueue.values():
        metrics.ISSUES_ENQUEUED.labels(queue=severity, outcome="sent").inc()
    Issue.objects.filter(id__in=list(to_enqueue), enqueue_state=EnqueueState.PENDING).update(
        enqueue_state=EnqueueState.SENT, enqueued_at=timezone.now()
    )
    return len(to_enqueue)


def reenqueue_pending(*, older_than: timedelta = PENDING_GRACE) -> int:
    """Send again every issue still pending after the grace period (the broker was down)."""
    cutoff = timezone.now() - older_than
    rows = Issue.objects.filter(enqueue_state=EnqueueState.PENDING, enqueued_at__lt=cutoff).values_list(
        "id", "severity"
    )[:REENQUEUE_BATCH]
    to_enqueue = {str(pk): severity for pk, severity in rows}
    sent = issues_enqueue(to_enqueue=to_enqueue)
    if to_enqueue:
        logger.info("re-enqueued pending issues", extra={"pending": len(to_enqueue), "sent": sent})
    return sent
