"""Owner notifications: channel credentials, routing windows, quiet-hours release and the digest.

Each channel is off until its credentials are set; the admin shows which are "not configured".
"""

import os
from decimal import Decimal

# Pusher Beams: https://pusher.com/docs/beams/reference/server-sdk-python/
KAIZEN_BEAMS_INSTANCE_ID = os.environ.get("KAIZEN_BEAMS_INSTANCE_ID", "")
KAIZEN_BEAMS_SECRET_KEY = os.environ.get("KAIZEN_BEAMS_SECRET_KEY", "")
# A host other than <instance>.pushnotifications.pusher.com (a proxy) and the CA bundle that signs it.
KAIZEN_BEAMS_ENDPOINT = os.environ.get("KAIZEN_BEAMS_ENDPOINT", "")
KAIZEN_BEAMS_CA_BUNDLE = os.environ.get("KAIZEN_BEAMS_CA_BUNDLE", "")
# Twilio SMS: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
KAIZEN_TWILIO_ACCOUNT_SID = os.environ.get("KAIZEN_TWILIO_ACCOUNT_SID", "")
KAIZEN_TWILIO_AUTH_TOKEN = os.environ.get("KAIZEN_TWILIO_AUTH_TOKEN", "")
KAIZEN_TWILIO_FROM = os.environ.get("KAIZEN_TWILIO_FROM", "")
KAIZEN_TWILIO_BASE_URL = os.environ.get("KAIZEN_TWILIO_BASE_URL", "")  # unset: https://api.twilio.com
KAIZEN_OWNER_PHONE = os.environ.get("KAIZEN_OWNER_PHONE", "")
# Chat: incoming-webhook URLs (Slack https://api.slack.com/messaging/webhooks,
# Discord https://discord.com/developers/docs/resources/webhook#execute-webhook).
KAIZEN_SLACK_WEBHOOK_URL = os.environ.get("KAIZEN_SLACK_WEBHOOK_URL", "")
KAIZEN_DISCORD_WEBHOOK_URL = os.environ.get("KAIZEN_DISCORD_WEBHOOK_URL", "")
# Email goes through Django's mail framework: console unless EMAIL_BACKEND/EMAIL_HOST say otherwise.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "").lower() in ("1", "true", "yes", "on")
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "kaizen@localhost")

# Every provider call is bounded: neither the Twilio nor the Beams SDK sets a timeout of its own.
KAIZEN_NOTIFY_TIMEOUT = float(os.environ.get("KAIZEN_NOTIFY_TIMEOUT", "10"))
# Transient failures retry after base·2^(attempt-1) seconds (or the provider's Retry-After, if longer).
KAIZEN_NOTIFY_MAX_ATTEMPTS = int(os.environ.get("KAIZEN_NOTIFY_MAX_ATTEMPTS", "6"))
KAIZEN_NOTIFY_BACKOFF_SECONDS = float(os.environ.get("KAIZEN_NOTIFY_BACKOFF_SECONDS", "5"))
# An alert with the same dedupe key (the same issue) pages once within this window, unless more severe.
KAIZEN_NOTIFY_DEDUPE_MINUTES = int(os.environ.get("KAIZEN_NOTIFY_DEDUPE_MINUTES", "60"))
# Alert storms: past this many sends on one channel within the window, alerts are held and go out as
# one summary a minute (0 turns the guard off).
KAIZEN_NOTIFY_STORM_PAGES = int(os.environ.get("KAIZEN_NOTIFY_STORM_PAGES", "5"))
KAIZEN_NOTIFY_STORM_MINUTES = int(os.environ.get("KAIZEN_NOTIFY_STORM_MINUTES", "10"))
KAIZEN_NOTIFY_P2_BATCH_MINUTES = int(os.environ.get("KAIZEN_NOTIFY_P2_BATCH_MINUTES", "15"))
KAIZEN_NOTIFY_DIGEST_HOUR = int(os.environ.get("KAIZEN_NOTIFY_DIGEST_HOUR", "8"))  # owner's local hour
# A P0's alerts go on the P0 queue itself, so a storm of P1 alerts never sits in front of a page; P1
# on the urgent group's queue; P2/P3 (batched anyway) on the routine group's.
KAIZEN_NOTIFY_PAGE_QUEUE = "P0"
KAIZEN_NOTIFY_URGENT_QUEUE = "notify"
KAIZEN_NOTIFY_ROUTINE_QUEUE = "P3"
# System alerts: messages waiting in one queue above this raise a SYSTEM_ALERT.
KAIZEN_NOTIFY_BACKLOG_THRESHOLD = int(os.environ.get("KAIZEN_NOTIFY_BACKLOG_THRESHOLD", "1000"))
# Revenue milestones, announced once each (the product's `revenue` gauge or counter).
KAIZEN_REVENUE_MILESTONES = [
    Decimal(v) for v in os.environ.get("KAIZEN_REVENUE_MILESTONES", "100,1000,10000,100000,1000000").split(",") if v
]


def notification_beat_schedule() -> dict[str, dict]:
    """The periodic notification work, merged into CELERY_BEAT_SCHEDULE."""
    return {
        "notify-p2-batch": {
            "task": "notifications.tasks.p2_batch_send",
            "schedule": KAIZEN_NOTIFY_P2_BATCH_MINUTES * 60.0,
            "options": {"queue": KAIZEN_NOTIFY_URGENT_QUEUE},
        },
        "notify-quiet-hours-release": {
            "task": "notifications.tasks.quiet_hours_release",
            "schedule": 60.0,
            "options": {"queue": KAIZEN_NOTIFY_URGENT_QUEUE},
        },
        "notify-storm-release": {
            "task": "notifications.tasks.storm_release",
            "schedule": 60.0,
            "options": {"queue": KAIZEN_NOTIFY_URGENT_QUEUE},
        },
        # Hourly: the digest goes out at KAIZEN_NOTIFY_DIGEST_HOUR in the owner's timezone, whatever DST does.
        "notify-daily-digest": {
            "task": "notifications.tasks.daily_digest_send",
            "schedule": 3600.0,
            "options": {"queue": KAIZEN_NOTIFY_ROUTINE_QUEUE},
        },
        "notify-system-check": {
            "task": "notifications.tasks.system_check",
            "schedule": 60.0,
            "options": {"queue": KAIZEN_NOTIFY_URGENT_QUEUE},
        },
    }
