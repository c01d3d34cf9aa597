"""Held alerts going out together: the P2 batch push, the summary when quiet hours end and the
minute's summary of an alert storm.

Nothing held is dropped: each held delivery is marked `summarised` and points at the summary that
carried it, in the same transaction that queues the summary.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .deliveries import configured_channels, delivery_publish
from .models import Channel, Delivery, DeliveryStatus, EventType, Hold, Notification
from .routing import quiet_hours_settings, quiet_now, severity_rank

ITEMS_SHOWN = 20  # in a summary's body; the count covers them all


def summary_items(notifications: list[Notification]) -> list[dict[str, str]]:
    return [{"severity": n.severity, "title": n.title, "body": n.body[:200], "kind": n.kind} for n in notifications]


def held_summarise(*, hold: str, channel: str, title: str, now: datetime) -> Notification | None:
    """Claim every delivery held for `hold` on `channel` and queue one summary delivery that carries
    them; None when nothing was held. skip_locked: two beat ticks never summarise one row twice."""
    with transaction.atomic():
        held = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=DeliveryStatus.HELD, hold=hold, channel=channel)
            .select_related("notification")
            .order_by("notification__severity", "created_at")
        )
        if not held:
            return None
        notifications = [d.notification for d in held]
        severity = min((n.severity for n in notifications), key=severity_rank)
        lines = [f"[{n.severity}] {n.title}" for n in notifications[:ITEMS_SHOWN]]
        if len(notifications) > ITEMS_SHOWN:
            lines.append(f"… and {len(notifications) - ITEMS_SHOWN} more")
        summary = Notification.objects.create(
            kind=EventType.SUMMARY,
            severity=severity,
            title=title.format(count=len(notifications)),
            body="\n".join(lines),
            detail={"hold": hold, "items": summary_items(notifications[:ITEMS_SHOWN]), "count": len(notifications)},
            routed_at=now,
        )
        Delivery.objects.filter(pk__in=[d.pk for d in held]).update(status=DeliveryStatus.SUMMARISED, summary=summary)
        usable = channel in configured_channels()
        delivery = Delivery.objects.create(
            notification=summary, channel=channel,
            status=DeliveryStatus.QUEUED if usable else DeliveryStatus.SUPPRESSED,
            error="" if usable else "not configured", next_attempt_at=now if usable else None,
        )  # fmt: skip
        if usable:
            delivery_publish(delivery=delivery)
        return summary


def held_release(*, hold: str, title: str, now: datetime) -> list[Notification]:
    """One summary per channel of what `hold` is holding."""
    held = Delivery.objects.filter(status=DeliveryStatus.HELD, hold=hold)
    channels = held.order_by("channel").values_list("channel", flat=True).distinct()
    summaries = [held_summarise(hold=hold, channel=channel, title=title, now=now) for channel in channels]
    return [s for s in summaries if s is not None]


def quiet_hours_release(*, now: datetime | None = None) -> list[Notification]:
    """Once quiet hours are over, one summary per channel of what arrived during them."""
    now = now or timezone.now()
    if quiet_now(quiet=quiet_hours_settings(), now=now):
        return []
    return held_release(hold=Hold.QUIET, title="{count} alerts during quiet hours", now=now)


def storm_release(*, now: datetime | None = None) -> list[Notification]:
    """Each minute of an alert storm, one summary per channel of the alerts it held back
    (deliveries.storm_admit). The summaries are not counted against the storm: they are how the
    owner hears of the rest."""
    now = now or timezone.now()
    return held_release(hold=Hold.STORM, title="{count} more in an alert storm", now=now)


def p2_batch_send(*, now: datetime | None = None) -> Notification | None:
    """The P2 summary push; during quiet hours the batch keeps waiting (held, not dropped)."""
    now = now or timezone.now()
    if quiet_now(quiet=quiet_hours_settings(), now=now):
        return None
    return held_summarise(hold=Hold.BATCH, channel=Channel.PUSH, title="{count} degraded-service alerts", now=now)
