"""Kaizen watching itself: a queue backlog over threshold or a worker group gone alerts the owner.

Each check alerts with a dedupe key of its own, so a backlog that lasts an hour pages once per
KAIZEN_NOTIFY_DEDUPE_MINUTES, not once a minute.
"""

import logging

from celery import current_app
from django.conf import settings
from kombu import Connection

from kaizen_site.celery import worker_group

from .deliveries import delivery_attempt, notification_route
from .models import DeliveryStatus, EventType, Notification, Severity
from .owner_alert import owner_alert

logger = logging.getLogger("kaizen.notifications")
PING_TIMEOUT = 2.0  # seconds; a worker busy on a long task still answers control messages
BROKER_TIMEOUT = 5.0  # seconds to connect to the broker before calling it down


def queue_backlogs() -> dict[str, int]:
    """Messages waiting per queue; empty when the broker is not Redis (kombu keeps each queue as a list)."""
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        return {}
    with current_app.connection_for_read() as connection:
        client = connection.channel().client
        return {queue.name: int(client.llen(queue.name)) for queue in settings.CELERY_TASK_QUEUES}


def worker_groups_alive() -> set[str]:
    """Groups with at least one worker answering a ping (kaizen_site.celery.worker_group)."""
    answers = current_app.control.ping(timeout=PING_TIMEOUT) or []
    return {worker_group(hostname) for answer in answers for hostname in answer}


def system_check_run() -> list[str]:
    """Run every check; the alerts it raised, by dedupe key."""
    raised = []
    for queue, waiting in queue_backlogs().items():
        if waiting > settings.KAIZEN_NOTIFY_BACKLOG_THRESHOLD:
            key = f"system:backlog:{queue}"
            owner_alert(
                kind=EventType.SYSTEM_ALERT, severity=Severity.P1, target=f"queue:{queue}", dedupe_key=key,
                title=f"{waiting} tasks waiting on queue {queue}",
                body=f"Over {settings.KAIZEN_NOTIFY_BACKLOG_THRESHOLD}: its workers are behind or stopped.",
                detail={"queue": queue, "waiting": waiting},
            )  # fmt: skip
            raised.append(key)
    alive = worker_groups_alive()
    for group, queues in settings.CELERY_WORKER_GROUPS.items():
        if group not in alive:
            key = f"system:workers:{group}"
            owner_alert(
                kind=EventType.SYSTEM_ALERT, severity=Severity.P0, target=f"workers:{group}", dedupe_key=key,
                title=f"No {group} worker is running", body=f"Nothing consumes {queues}.", detail={"group": group},
            )  # fmt: skip
            raised.append(key)
    if raised:
        logger.warning("system alerts raised", extra={"alerts": raised})
    return raised


def broker_reachable(*, url: str) -> bool:
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception:  # noqa: BLE001 - each transport raises its own errors; any of them means "down"
        return False
    return True


def broker_down_alert(*, url: str) -> Notification | None:
    """Alert the owner that the broker is down, without it: routed and sent in this process, since no
    task can be published. Runs outside Celery (`manage.py notify_watch`); None when the broker answers."""
    if broker_reachable(url=url):
        return None
    notification = owner_alert(
        kind=EventType.SYSTEM_ALERT, severity=Severity.P0, target="broker", dedupe_key="system:broker",
        title="The task broker is down", body="Nothing is being healed or delivered until it is back.",
    )  # fmt: skip
    for delivery in notification_route(notification_id=notification.pk):
        if delivery.status == DeliveryStatus.QUEUED:
            delivery_attempt(delivery_id=delivery.pk)
    # A fallback created by a failed send is queued too; send it here for the same reason.
    for pk in notification.deliveries.filter(status=DeliveryStatus.QUEUED).values_list("pk", flat=True):
        delivery_attempt(delivery_id=pk)
    return notification
