"""Each event type rendered for each channel: push title/body, SMS (one segment), email text + HTML."""

from django.conf import settings
from django.template.loader import render_to_string

from .channels.base import Message
from .models import Channel, EventType, Notification

SMS_LIMIT = 160  # one GSM-7 segment: longer texts are split and billed per part
PUSH_BODY_LIMIT = 240  # what a lock screen shows before it cuts anyway

# Per event type: the push/email headline and the SMS prefix (the SMS must say what it is in a few characters).
EVENT_TEMPLATES: dict[str, dict[str, str]] = {
    EventType.ISSUE_DETECTED: {"headline": "New {severity} issue", "sms": "{severity} issue"},
    EventType.ISSUE_RESOLVED: {"headline": "Resolved", "sms": "Resolved"},
    EventType.HELP_REQUEST: {"headline": "A user asked for help", "sms": "Help request"},
    EventType.AUTO_FIX_FAILED: {"headline": "Auto-fix failed — you are needed", "sms": "{severity} fix failed"},
    EventType.ENHANCEMENT_READY: {"headline": "Improvements ready to review", "sms": "Proposals ready"},
    EventType.REVENUE_MILESTONE: {"headline": "Milestone reached", "sms": "Milestone"},
    EventType.SYSTEM_ALERT: {"headline": "Kaizen needs attention", "sms": "{severity} system"},
    EventType.SUMMARY: {"headline": "Summary", "sms": "Summary"},
}

DIGEST_SECTIONS = {
    "auto_fixed": "Fixed automatically",
    "pending": "Waiting for you",
    "new_patterns": "New patterns learned",
    "proposals": "Proposals ready",
    "minor_alerts": "Minor alerts",
}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def notification_url(notification: Notification) -> str:
    return f"{settings.KAIZEN_PUBLIC_URL.rstrip('/')}/admin/notifications/notification/{notification.pk}/change/"


def sms_text(*, notification: Notification) -> str:
    prefix = EVENT_TEMPLATES[notification.kind]["sms"].format(severity=notification.severity)
    return _clip(f"Kaizen {prefix}: {notification.title}. {notification.body}".strip(), SMS_LIMIT)


def message_for(notification: Notification, *, channel: str) -> Message:
    """The message for `channel`; the email templates are rendered only for email."""
    templates = EVENT_TEMPLATES[notification.kind]
    headline = templates["headline"].format(severity=notification.severity)
    url = notification_url(notification)
    digest = notification.detail.get("digest")
    template = "notifications/digest" if digest else "notifications/email"
    context = {
        "notification": notification,
        "headline": headline,
        "url": url,
        "items": notification.detail.get("items", []),
        "sections": [(DIGEST_SECTIONS.get(name, name), section) for name, section in (digest or {}).items()],
    }
    return Message(
        severity=notification.severity,
        kind=notification.kind,
        title=_clip(f"{headline}: {notification.title}", 120),
        body=_clip(notification.body or notification.title, PUSH_BODY_LIMIT),
        sms=sms_text(notification=notification),
        text=render_to_string(f"{template}.txt", context) if channel == Channel.EMAIL else "",
        html=render_to_string(f"{template}.html", context) if channel == Channel.EMAIL else "",
        url=url,
    )
