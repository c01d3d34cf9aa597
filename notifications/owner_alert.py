"""The one seam every owner alert goes through: record it, audit it, route it after commit.

Other apps import only this module (healing and flags call it where they used to write the
`owner.alert` audit row themselves); the timeline and RCA drafts keep reading that audit row.
"""

from typing import Any

from django.db import transaction

from healing.audit import AUTOMATIC, audit_record

from .models import EventType, Notification, Severity
from .publish import notification_publish
from .routing import notify_queue

# What callers need besides the function: the event types and severities it takes.
__all__ = ["EventType", "Severity", "owner_alert"]

ROUTE_TASK = "notifications.tasks.notification_route"
AUDIT_ACTION = "owner.alert"


def owner_alert(
    *,
    kind: str,
    severity: str,
    target: str,
    title: str,
    body: str = "",
    dedupe_key: str = "",
    detail: dict[str, Any] | None = None,
    actor: str = AUTOMATIC,
) -> Notification:
    """Alert the owner. `kind` is an EventType, `severity` P0–P3 (it picks the channels);
    `dedupe_key` (e.g. "issue:<id>") keeps one problem from paging twice within the window unless
    it grows more severe. Routing runs in a task after the caller's transaction commits, so an
    alert about work that rolled back is never sent."""
    if kind not in EventType.values or kind == EventType.SUMMARY:
        raise ValueError(f"unknown owner alert kind {kind!r}")
    if severity not in Severity.values:
        raise ValueError(f"unknown severity {severity!r}")
    detail = dict(detail or {})
    with transaction.atomic():  # the alert and its audit entry, together (and one commit, not two)
        notification = Notification.objects.create(
            kind=kind,
            severity=severity,
            target=target[:200],
            title=title[:200],
            body=body,
            dedupe_key=dedupe_key[:200],
            detail=detail,
        )
        audit_record(
            actor=actor,
            action=AUDIT_ACTION,
            target=target,
            detail={**detail, "event": kind, "severity": severity, "title": title[:200],
                    "notification": notification.pk},
        )  # fmt: skip
        notification_id, queue = notification.pk, notify_queue(severity=severity)
        transaction.on_commit(lambda: notification_publish(name=ROUTE_TASK, args=[notification_id], queue=queue))
    return notification
