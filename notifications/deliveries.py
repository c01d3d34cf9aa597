"""Turning an alert into sends: routing it once, sending each Delivery at least once and recording
every attempt, retrying what may succeed later, falling back for a P0 that cannot be pushed."""

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from redis import RedisError

from healing.audit import audit_record

from .channels import CHANNELS, DeliveryError
from .models import Channel, Delivery, DeliveryStatus, EventType, Notification, Severity
from .publish import notification_publish
from .rendering import message_for
from .routing import (
    NOT_CONFIGURED,
    ROUTES,
    Planned,
    fallback_next,
    fallback_plan,
    notify_queue,
    preferences_off,
    quiet_hours_settings,
    route_plan,
    severity_rank,
)

logger = logging.getLogger("kaizen.notifications")

SEND_TASK = "notifications.tasks.delivery_send"
ROUTE_TASK = "notifications.tasks.notification_route"
MAX_RETRY_DELAY = 900.0  # seconds; longer than this and the broker's visibility timeout is the risk
STUCK_AFTER = timedelta(minutes=2)


def configured_channels() -> set[str]:
    return {name for name, channel in CHANNELS.items() if channel.configured()}


def retry_delay(*, attempts: int, retry_after: float | None) -> float:
    """Exponential backoff from KAIZEN_NOTIFY_BACKOFF_SECONDS, never sooner than the provider asked."""
    backoff = settings.KAIZEN_NOTIFY_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)
    return min(MAX_RETRY_DELAY, max(backoff, retry_after or 0.0))


def delivery_publish(*, delivery: Delivery, countdown: float = 0.0) -> None:
    """Send `delivery` on its severity's queue once the current transaction commits."""
    queue = notify_queue(severity=delivery.notification.severity)
    delivery_id = delivery.pk
    transaction.on_commit(
        lambda: notification_publish(name=SEND_TASK, args=[delivery_id], queue=queue, countdown=countdown)
    )


def _lock_dedupe_key(key: str) -> None:
    """Two alerts with one key routed at once must not both page: they take turns on the key."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(key.encode())])


def storm_admit(*, channel: str, now: datetime) -> bool:
    """Whether one more send on `channel` fits this window's allowance: KAIZEN_NOTIFY_STORM_PAGES
    sends per channel per KAIZEN_NOTIFY_STORM_MINUTES. Past it, the alert is held for the minute's
    summary (summaries.storm_release): a batch of reports turning fifty issues into P0 at once gives
    the owner a few pages and a count, not a hundred texts. Counted in the shared cache, an atomic
    INCR on Redis, so routings in parallel count each other without waiting on one another (a
    database lock held them in line and kept P0 workers waiting during the very burst). When the
    count cannot be taken, the alert goes out."""
    limit = settings.KAIZEN_NOTIFY_STORM_PAGES
    if limit <= 0:
        return True
    span = settings.KAIZEN_NOTIFY_STORM_MINUTES * 60
    key = f"kaizen:notify-storm:{channel}:{int(now.timestamp() // span)}"
    try:
        cache.add(key, 0, timeout=span + 60)
        return cache.incr(key) <= limit
    except (RedisError, OSError, ValueError) as exc:  # ValueError: the key expired in between
        logger.warning("alert storm count unavailable; sending", extra={"channel": channel, "error": str(exc)})
        return True


def duplicate_of(*, notification: Notification, now: datetime) -> Notification | None:
    """An alert with the same dedupe key that paged within the window, at least as severe as this one."""
    if not notification.dedupe_key:
        return None
    window_start = now - timedelta(minutes=settings.KAIZEN_NOTIFY_DEDUPE_MINUTES)
    earlier = (
        Notification.objects.filter(
            dedupe_key=notification.dedupe_key, duplicate_of__isnull=True, routed_at__gte=window_start
        )
        .exclude(pk=notification.pk)
        .order_by("-routed_at")
    )
    for candidate in earlier:
        if severity_rank(candidate.severity) <= severity_rank(notification.severity):
            return candidate
    return None


def notification_route(*, notification_id: int, now: datetime | None = None) -> list[Delivery]:
    """Create this alert's deliveries (once: a redelivered task finds it routed) and publish the sends.
    The page itself (a P0/P1 push) is left for the caller to send (`sent_by_router`): one queue hop
    less on the path that matters most."""
    now = now or timezone.now()
    with transaction.atomic():
        notification = Notification.objects.filter(pk=notification_id, routed_at__isnull=True).first()
        if notification is None:
            return []
        if notification.dedupe_key:
            _lock_dedupe_key(notification.dedupe_key)
        if Notification.objects.filter(pk=notification_id, routed_at__isnull=True).update(routed_at=now) != 1:
            return []
        notification.routed_at = now
        original = duplicate_of(notification=notification, now=now)
        if original is not None:
            notification.duplicate_of = original
            notification.save(update_fields=["duplicate_of"])
            reason = f"duplicate of notification {original.pk} within {settings.KAIZEN_NOTIFY_DEDUPE_MINUTES} min"
            return [
                Delivery.objects.create(
                    notification=notification, channel=channel, status=DeliveryStatus.SUPPRESSED, error=reason
                )  # fmt: skip
                for channel, _mode in ROUTES[notification.severity]
            ]
        plan = route_plan(
            kind=notification.kind,
            severity=notification.severity,
            configured=configured_channels(),
            off=preferences_off(kind=notification.kind),
            quiet=quiet_hours_settings(),
            now=now,
            admit=lambda channel: storm_admit(channel=channel, now=now),
        )
        deliveries = Delivery.objects.bulk_create(
            [_delivery(planned, now=now, notification=notification) for planned in plan]
        )
        for delivery in deliveries:
            if delivery.status == DeliveryStatus.QUEUED and not sent_by_router(delivery=delivery):
                delivery_publish(delivery=delivery)
        if notification.severity == Severity.P0:
            existing = {d.channel: d.status for d in deliveries}
            for delivery in list(deliveries):
                if delivery.status == DeliveryStatus.SUPPRESSED and delivery.error == NOT_CONFIGURED:
                    deliveries += fallback_deliver(failed=delivery, now=now, existing=existing)
        return deliveries


def _delivery(planned: Planned, *, now: datetime, **links) -> Delivery:
    """An unsaved Delivery of `planned` (`links`: its notification, the delivery it falls back
    from); a queued one is due now."""
    return Delivery(
        channel=planned.channel, status=planned.status, hold=planned.hold, error=planned.error,
        next_attempt_at=now if planned.status == DeliveryStatus.QUEUED else None, **links,
    )  # fmt: skip


def sent_by_router(*, delivery: Delivery) -> bool:
    """Whether the routing task sends this delivery itself, right after routing commits. If that
    process dies first, the delivery stays queued and the sweep publishes it."""
    return (
        delivery.channel == Channel.PUSH
        and delivery.status == DeliveryStatus.QUEUED
        and delivery.notification.severity in (Severity.P0, Severity.P1)
    )


def fallback_deliver(*, failed: Delivery, now: datetime, existing: dict[str, str] | None = None) -> list[Delivery]:
    """The next channel in the P0 chain after `failed`; channels not configured are recorded and skipped.
    `existing` (channel → status of the notification's deliveries) is read from the database unless
    the caller, which has just created them, passes it; it is kept up to date here."""
    created: list[Delivery] = []
    current = failed
    configured = configured_channels()
    if existing is None:
        existing = dict(
            Delivery.objects.filter(notification_id=failed.notification_id).values_list("channel", "status")
        )
    while True:
        channel = fallback_next(failed_channel=current.channel, existing=existing)
        if channel is None:
            return created
        planned = fallback_plan(channel=channel, configured=configured, admit=lambda c: storm_admit(channel=c, now=now))
        delivery = _delivery(planned, now=now, notification_id=failed.notification_id, fallback_from=current)
        delivery.save()
        created.append(delivery)
        existing[channel] = delivery.status
        if planned.status == DeliveryStatus.SUPPRESSED:
            current = delivery  # not configured: the chain goes on
            continue
        if planned.status == DeliveryStatus.QUEUED:
            delivery.notification = failed.notification
            delivery_publish(delivery=delivery)
        return created  # queued, or held for the storm's summary on this channel


@dataclass(frozen=True)
class Attempt:
    status: str  # what the delivery is now: sent, queued (a retry is due), failed; "" if not ours to send
    retry_in: float | None = None


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> Attempt:
    """Send one queued delivery. The claim is a conditional UPDATE, so a duplicate or redelivered task
    sends nothing twice; the outcome is stored before this returns."""
    now = now or timezone.now()
    claimed = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, updated_at=now
    )
    if claimed != 1:
        return Attempt(status="")
    delivery = Delivery.objects.select_related("notification").get(pk=delivery_id)
    channel = CHANNELS[delivery.channel]
    try:
        result = channel.send(message=message_for(delivery.notification, channel=delivery.channel))
    except DeliveryError as exc:
        return _failed(delivery=delivery, error=exc, now=now)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT, provider_id=result.provider_id[:200], sent_at=timezone.now(), error="",
        next_attempt_at=None,
    )  # fmt: skip
    return Attempt(status=DeliveryStatus.SENT)


def _failed(*, delivery: Delivery, error: DeliveryError, now: datetime) -> Attempt:
    retriable = error.transient and delivery.attempts < settings.KAIZEN_NOTIFY_MAX_ATTEMPTS
    log_extra = {"delivery": delivery.pk, "channel": delivery.channel, "attempts": delivery.attempts}
    if retriable:
        delay = retry_delay(attempts=delivery.attempts, retry_after=error.retry_after)
        with transaction.atomic():
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.QUEUED, error=str(error), next_attempt_at=now + timedelta(seconds=delay)
            )
            delivery_publish(delivery=delivery, countdown=delay)
        logger.warning("notification send failed; retrying", extra={**log_extra, "error": str(error), "in": delay})
        return Attempt(status=DeliveryStatus.QUEUED, retry_in=delay)
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, error=str(error),
                                                       next_attempt_at=None)  # fmt: skip
        delivery.status = DeliveryStatus.FAILED
        if delivery.notification.severity == Severity.P0:
            fallback_deliver(failed=delivery, now=now)
    logger.error("notification send failed", extra={**log_extra, "error": str(error)})
    return Attempt(status=DeliveryStatus.FAILED)


def deliveries_resend_stuck(*, now: datetime | None = None) -> int:
    """Re-publish sends and routings whose task was lost (the broker was down at commit, a worker died
    before acking with acks_late off); the claims make a resend of a live task harmless."""
    now = now or timezone.now()
    stuck = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, next_attempt_at__lt=now - STUCK_AFTER).select_related(
            "notification"
        )[:500]
    )
    with transaction.atomic():
        for delivery in stuck:
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
            delivery_publish(delivery=delivery)
        unrouted = list(
            Notification.objects.filter(routed_at__isnull=True, created_at__lt=now - STUCK_AFTER).values_list(
                "pk", "severity"
            )[:500]
        )
        for pk, severity in unrouted:
            transaction.on_commit(
                lambda pk=pk, severity=severity: notification_publish(
                    name=ROUTE_TASK, args=[pk], queue=notify_queue(severity=severity)
                )  # fmt: skip
            )
    return len(stuck) + len(unrouted)


def test_notification_send(*, channel: str, actor: str) -> Delivery:
    """ "Send a test notification" from the console: one real send on `channel`, recorded like any other."""
    now = timezone.now()
    with transaction.atomic():
        notification = Notification.objects.create(
            kind=EventType.SYSTEM_ALERT, severity=Severity.P3, target=f"channel:{channel}", routed_at=now,
            title="Test notification", body=f"Sent from the console by {actor} to check the {channel} channel.",
        )  # fmt: skip
        delivery = Delivery.objects.create(notification=notification, channel=channel, next_attempt_at=now)
        audit_record(
            actor=actor, action="notification.test", target=f"channel:{channel}", detail={"delivery": delivery.pk}
        )
    # Sent here, not by a worker: the owner is looking at the page and wants the answer.
    delivery_attempt(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    return delivery
