"""Owner alerts and what became of each: one Notification per alert, one Delivery per channel send."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    ISSUE_DETECTED = "issue_detected", "Issue detected"
    ISSUE_RESOLVED = "issue_resolved", "Issue resolved"
    HELP_REQUEST = "help_request", "Help request"
    AUTO_FIX_FAILED = "auto_fix_failed", "Auto-fix failed"
    ENHANCEMENT_READY = "enhancement_ready", "Enhancement ready"
    REVENUE_MILESTONE = "revenue_milestone", "Revenue milestone"
    SYSTEM_ALERT = "system_alert", "System alert"
    # What Kaizen sends itself: the summary of a P2 batch or of quiet hours, the daily digest.
    SUMMARY = "summary", "Summary"


class Severity(models.TextChoices):
    P0 = "P0", "P0 critical"
    P1 = "P1", "P1 major"
    P2 = "P2", "P2 degraded"
    P3 = "P3", "P3 minor"


class Channel(models.TextChoices):
    PUSH = "push", "Push (Pusher Beams)"
    SMS = "sms", "SMS (Twilio)"
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"
    DISCORD = "discord", "Discord"


class Notification(models.Model):
    """One owner alert, as the seam recorded it."""

    kind = models.CharField(max_length=24, choices=EventType.choices)
    severity = models.CharField(max_length=2, choices=Severity.choices)
    target = models.CharField(max_length=200, blank=True, help_text="What it is about: issue:<id>, change:<key>…")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    dedupe_key = models.CharField(max_length=200, blank=True, help_text="Alerts sharing it page the owner once.")
    detail = models.JSONField(default=dict, blank=True)
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["dedupe_key", "-created_at"], name="notif_dedupe_idx")]

    def __str__(self) -> str:
        return f"{self.severity} {self.title}"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # not sent on purpose: a duplicate, a preference, a channel not configured
    HELD = "held"  # waits for the end of quiet hours, the P2 batch, the daily digest or the storm summary
    SUMMARISED = "summarised"  # was held, then went out inside `summary`


class Hold(models.TextChoices):
    NONE = "", "—"
    QUIET = "quiet", "Quiet hours"
    BATCH = "batch", "P2 batch"
    DIGEST = "digest", "Daily digest"
    STORM = "storm", "Alert storm"


class Delivery(models.Model):
    """One channel send of one notification, with every attempt counted and the last error kept."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    hold = models.CharField(max_length=8, choices=Hold.choices, default=Hold.NONE, blank=True)
    summary = models.ForeignKey(
        Notification, null=True, blank=True, on_delete=models.SET_NULL, related_name="summarised_deliveries"
    )
    fallback_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a queued send is due; the sweep re-publishes it if its task is lost."
    )
    provider_id = models.CharField(max_length=200, blank=True, help_text="Beams publishId, Twilio sid, Message-ID.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "hold", "channel"], name="delivery_held_idx")]

    def __str__(self) -> str:
        return f"{self.channel} {self.status}"


class Preference(models.Model):
    """Whether an event type goes to a channel; no row means the routing table's default (on)."""

    kind = models.CharField(max_length=24, choices=EventType.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "channel"], name="preference_unique")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.channel}: {'on' if self.enabled else 'off'}"


class QuietHours(models.Model):
    """Do-not-disturb in the owner's timezone (KAIZEN_OWNER_TIMEZONE). One row: the owner's."""

    enabled = models.BooleanField(default=False)
    start = models.TimeField(default="22:00", help_text="Local time quiet hours begin.")
    end = models.TimeField(default="07:00", help_text="Local time they end (the next day when before start).")
    p0_breaks_through = models.BooleanField(default=True, help_text="A P0 still pages during quiet hours.")

    class Meta:
        verbose_name_plural = "quiet hours"

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}" if self.enabled else "off"


class Device(models.Model):
    """A phone or browser the owner subscribed to push with (Beams device id)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_devices")
    device_id = models.CharField(max_length=200)
    platform = models.CharField(max_length=10, choices=[("web", "web"), ("ios", "iOS"), ("android", "Android")])
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "device_id"], name="device_unique")]

    def __str__(self) -> str:
        return self.name or self.device_id


class Digest(models.Model):
    """One daily email digest per local date: the beat task runs hourly and must send it once."""

    date = models.DateField(unique=True)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)


class ProductMetric(models.Model):
    """A named counter or gauge the owner's product reports (revenue, builds, active users)."""

    project = models.ForeignKey("healing.Project", on_delete=models.CASCADE, related_name="product_metrics")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=[("counter", "counter"), ("gauge", "gauge")])
    value = models.DecimalField(max_digits=20, decimal_places=4)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["project", "name", "-recorded_at"], name="metric_latest_idx"),
            # The console's dashboard: the last 24 hours of a few names, across projects.
            models.Index(fields=["name", "recorded_at"], name="metric_name_recent"),
        ]


class MilestoneReached(models.Model):
    """A revenue threshold crossed once; the unique row is what keeps it from being announced twice."""

    project = models.ForeignKey("healing.Project", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=64)
    threshold = models.DecimalField(max_digits=20, decimal_places=4)
    reached_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "metric", "threshold"], name="milestone_unique"),
        ]
