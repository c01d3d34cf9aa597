"""Publishing notification work by task name, so no module imports `tasks` to send it."""

import logging

from celery import current_app

logger = logging.getLogger("kaizen.notifications")


def task_publish(*, name: str, args: list, queue: str, countdown: float = 0.0) -> None:
    """Publish after commit (callers wrap this in transaction.on_commit). A broker outage is logged,
    not raised into a committed request: the row stays queued and the sweep re-publishes it."""
    try:
        current_app.send_task(name, args=args, queue=queue, countdown=countdown or None)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors; the sweep is the retry
        logger.warning("notification task not published; the sweep will", extra={"task": name, "error": str(exc)})
