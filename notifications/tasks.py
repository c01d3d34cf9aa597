"""Celery shells for notification work; the logic is in deliveries, summaries, digest and system_checks.

Queues are chosen at publish time (routing.notify_queue): P0 on `P0` (critical workers), P1 on
`notify` (urgent workers), P2/P3 on the routine workers' queue.
"""

from celery import shared_task

from . import deliveries, digest, summaries, system_checks


@shared_task(name="notifications.tasks.notification_route", acks_late=True)
def notification_route(notification_id: int) -> None:
    for delivery in deliveries.notification_route(notification_id=notification_id):
        if deliveries.sent_by_router(delivery=delivery):
            deliveries.delivery_attempt(delivery_id=delivery.pk)


@shared_task(name="notifications.tasks.delivery_send", acks_late=True)
def delivery_send(delivery_id: int) -> None:
    # A transient failure re-publishes this task with its backoff; attempts are counted on the row.
    deliveries.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="notifications.tasks.p2_batch_send")
def p2_batch_send() -> None:
    summaries.p2_batch_send()


@shared_task(name="notifications.tasks.quiet_hours_release")
def quiet_hours_release() -> None:
    summaries.quiet_hours_release()


@shared_task(name="notifications.tasks.storm_release")
def storm_release() -> None:
    summaries.storm_release()


@shared_task(name="notifications.tasks.daily_digest_send")
def daily_digest_send() -> None:
    digest.daily_digest_send()


@shared_task(name="notifications.tasks.system_check")
def system_check() -> None:
    system_checks.system_check_run()
    deliveries.deliveries_resend_stuck()
