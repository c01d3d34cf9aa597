"""The audit log: every owner action and every automatic action."""

from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """Every owner action and every automatic action, append-only."""

    actor = models.CharField(max_length=200, help_text='A username, or "kaizen" for automatic actions.')
    action = models.CharField(max_length=100)
    target = models.CharField(max_length=200)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(
        null=True,
        blank=True,
        verbose_name="IP",
        help_text="The client address of a console action; empty for Kaizen's own.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"
