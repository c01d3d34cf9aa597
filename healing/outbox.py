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
from kombu.exceptions import KombuError, OperationalError

from . import metrics
from .models import EnqueueState, Issue

logger = logging.getLogger("kaizen.outbox")

# Long enough that the publish right after commit has normally happened or failed by then.
PENDING_GRACE = timedelta(seconds=20)
REENQUEUE_BATCH = 1000


def issues_enqueue(*, to_enqueue: dict[str, str]) -> int:
    """Publish process_issue for each issue on its severity's queue; returns how many were sent."""
    if not to_enqueue:
        return 0
    from kaizen_site.celery import app

    from .tasks import process_issue

    sent: list[str] = []
    # Each transport raises its own client's errors (redis-py's, amqp's...); kombu lists them.
    connection = app.connection_for_write()
    broker_errors = (OperationalError, KombuError, OSError, *connection.connection_errors, *connection.channel_errors)
    try:
        with app.producer_or_acquire() as producer:
            for issue_id, severity in to_enqueue.items():
                process_issue.apply_async(args=[issue_id], queue=severity, producer=producer)
                sent.append(issue_id)
                metrics.ISSUES_ENQUEUED.labels(queue=severity, outcome="sent").inc()
    except broker_errors as exc:
        failed = [pk for pk in to_enqueue if pk not in sent]
        metrics.ISSUES_ENQUEUED.labels(queue="", outcome="broker_down").inc(len(failed))
        Issue.objects.filter(id__in=failed).update(enqueue_attempts=F("enqueue_attempts") + 1)
        logger.warning(
            "broker unreachable; issues stay pending and will be re-enqueued",
            extra={"pending": len(failed), "error": str(exc)},
        )
    if sent:
        Issue.objects.filter(id__in=sent, enqueue_state=EnqueueState.PENDING).update(
            enqueue_state=EnqueueState.SENT, enqueued_at=timezone.now()
        )
    return len(sent)


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
