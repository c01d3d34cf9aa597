"""Publishing notification work after commit: the project's one publisher, with a broker outage
logged rather than raised into a committed request (the row stays queued; the sweep re-publishes it)."""

import logging

from kaizen_site.celery import broker_errors, task_publish

logger = logging.getLogger("kaizen.notifications")


def notification_publish(*, name: str, args: list, queue: str, countdown: float = 0.0) -> None:
    try:
        task_publish(name, args=args, queue=queue, countdown=countdown or None)
    except broker_errors() as exc:
        logger.warning("notification task not published; the sweep will", extra={"task": name, "error": str(exc)})
