"""The owner's preferences: which event types reach which channels, and quiet hours.

Every change is audited; a write that changes nothing records nothing.
"""

from datetime import time
from typing import Any

from django.db import transaction

from healing.audit import audit_record

from .models import Channel, EventType, Preference, QuietHours

QUIET_FIELDS = ("enabled", "start", "end", "p0_breaks_through")


def preferences_table() -> list[dict[str, Any]]:
    """Every event type × channel with whether it is on (no row: on)."""
    off = set(Preference.objects.filter(enabled=False).values_list("kind", "channel"))
    return [
        {"kind": kind, "channel": channel, "enabled": (kind, channel) not in off}
        for kind in EventType.values
        if kind != EventType.SUMMARY
        for channel in Channel.values
    ]


def quiet_hours_get() -> QuietHours:
    return QuietHours.objects.order_by("pk").first() or QuietHours()


def preferences_update(
    *, changes: list[dict[str, Any]], quiet: dict[str, bool | time] | None, actor: str
) -> dict[str, Any]:
    """Apply `changes` ({kind, channel, enabled}) and the quiet-hours fields given; returns what changed."""
    changed: dict[str, Any] = {"preferences": [], "quiet_hours": {}}
    with transaction.atomic():
        for change in changes:
            current = (
                Preference.objects.select_for_update().filter(kind=change["kind"], channel=change["channel"]).first()
            )
            if (current.enabled if current else True) == change["enabled"]:
                continue
            Preference.objects.update_or_create(
                kind=change["kind"], channel=change["channel"], defaults={"enabled": change["enabled"]}
            )
            changed["preferences"].append(dict(change))
        if quiet:
            row = QuietHours.objects.select_for_update().order_by("pk").first() or QuietHours()
            for field in QUIET_FIELDS:
                if field in quiet and getattr(row, field) != quiet[field]:
                    setattr(row, field, quiet[field])
                    changed["quiet_hours"][field] = str(quiet[field])
            if changed["quiet_hours"]:
                row.save()
        if changed["preferences"] or changed["quiet_hours"]:
            audit_record(actor=actor, action="notifications.preferences", target="owner", detail=changed)
    return changed
