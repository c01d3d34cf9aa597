"""The daily email digest: what Kaizen fixed by itself, what waits for the owner, the patterns it
learned, the proposals ready, and every minor (P3) alert held for it since the last one."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from healing.models import ErrorPattern, Issue, Stage

from .deliveries import configured_channels, delivery_publish
from .models import Channel, Delivery, DeliveryStatus, Digest, EventType, Hold, Notification, Severity
from .routing import owner_zone

SECTION_LIMIT = 50  # rows per section; the count says how many there were


def _section(items: list[dict[str, str]], count: int) -> dict:
    return {"count": count, "items": items}


def digest_sections(*, since: datetime, until: datetime, held: list[Notification]) -> dict[str, dict]:
    """Each section as {"count", "items": [{"title", "body"}]}, newest first, SECTION_LIMIT items at most."""
    fixed = Issue.objects.filter(stage__in=[Stage.RESOLVED, Stage.MITIGATED], resolved_at__range=(since, until))
    pending = Issue.objects.filter(stage__in=[Stage.NEEDS_INPUT, Stage.ESCALATED])
    patterns = ErrorPattern.objects.filter(created_at__range=(since, until))
    proposals = Notification.objects.filter(kind=EventType.ENHANCEMENT_READY, created_at__range=(since, until))
    return {
        "auto_fixed": _section(
            [{"title": f"[{i.severity}] {i.title}", "body": i.culprit}
             for i in fixed.order_by("-resolved_at")[:SECTION_LIMIT]],
            fixed.count(),
        ),
        "pending": _section(
            [{"title": f"[{i.severity}] {i.title}", "body": i.get_stage_display()}
             for i in pending.order_by("-last_seen")[:SECTION_LIMIT]],
            pending.count(),
        ),
        "new_patterns": _section(
            [{"title": p.name, "body": p.description[:300]} for p in patterns.order_by("-created_at")[:SECTION_LIMIT]],
            patterns.count(),
        ),
        "proposals": _section(
            [{"title": n.title, "body": n.body[:300]} for n in proposals.order_by("-created_at")[:SECTION_LIMIT]],
            proposals.count(),
        ),
        "minor_alerts": _section(
            [{"title": f"[{n.severity}] {n.title}", "body": n.body[:300]} for n in held[:SECTION_LIMIT]], len(held)
        ),
    }  # fmt: skip


def daily_digest_send(*, now: datetime | None = None) -> Notification | None:
    """Send today's digest once the owner's local clock passes KAIZEN_NOTIFY_DIGEST_HOUR; the hourly
    beat calls this, and the unique Digest row per local date makes the second call a no-op."""
    now = now or timezone.now()
    local = now.astimezone(owner_zone())
    if local.hour < settings.KAIZEN_NOTIFY_DIGEST_HOUR:
        return None
    since = now - timedelta(days=1)
    try:
        with transaction.atomic():
            held_rows = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(status=DeliveryStatus.HELD, hold=Hold.DIGEST)
                .select_related("notification")
                .order_by("created_at")
            )
            held = [d.notification for d in held_rows]
            sections = digest_sections(since=since, until=now, held=held)
            summary = Notification.objects.create(
                kind=EventType.SUMMARY,
                severity=Severity.P3,
                title=f"Daily digest for {local:%A %-d %B}",
                body=", ".join(f"{s['count']} {name.replace('_', ' ')}" for name, s in sections.items()),
                detail={"digest": sections},
                routed_at=now,
            )
            Digest.objects.create(date=local.date(), notification=summary)
            Delivery.objects.filter(pk__in=[d.pk for d in held_rows]).update(
                status=DeliveryStatus.SUMMARISED, summary=summary
            )
            usable = Channel.EMAIL in configured_channels()
            delivery = Delivery.objects.create(
                notification=summary, channel=Channel.EMAIL,
                status=DeliveryStatus.QUEUED if usable else DeliveryStatus.SUPPRESSED,
                error="" if usable else "not configured", next_attempt_at=now if usable else None,
            )  # fmt: skip
            if usable:
                delivery_publish(delivery=delivery)
    except IntegrityError:
        return None  # today's digest is already out
    return summary
