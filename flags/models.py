"""Feature flags, per-user overrides, and the history of every change made to them.

Rows are written only through `flags.services`, which records each change (FlagChange + the
audit log) and bumps the project's SnapshotVersion so every process reloads its snapshot.
"""

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from healing.models import Project

# No ":" in a key: it separates the fields of the signed probe header and the bucketing input.
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# A key equal to a fixed route under /api/v1/flags/ could never be addressed.
RESERVED_KEYS = frozenset({"evaluate"})


class FlagStatus(models.TextChoices):
    STABLE = "stable"
    TESTING = "testing"  # a fix being verified or canaried
    MONITORING = "monitoring"  # rolled out, still watched for degradation


class Flag(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="flags")
    key = models.CharField(
        max_length=100,
        validators=[RegexValidator(KEY_PATTERN, "Letters, digits, '.', '_' and '-', starting with a letter or digit.")],
    )
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=False, help_text="Off: nobody gets it, except users with an override.")
    rollout_percentage = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of users (0–100) who get the flag while it is enabled.",
    )
    group_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="Bucketing salt; empty means the key. Changing it reshuffles who is in the rollout.",
    )
    status = models.CharField(max_length=12, choices=FlagStatus.choices, default=FlagStatus.STABLE)
    killed = models.BooleanField(default=False, help_text="Kill switch: off for everyone, overrides included.")
    killed_at = models.DateTimeField(null=True, blank=True)
    killed_by = models.CharField(max_length=200, blank=True)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project", "key"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="flag_unique_key_per_project"),
            models.CheckConstraint(
                condition=Q(rollout_percentage__gte=0) & Q(rollout_percentage__lte=100), name="flag_percentage_0_100"
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def bucket_group(self) -> str:
        return self.group_id or self.key


class Override(models.Model):
    """Forces a flag on or off for one user (the affected user's canary, a tester, an opt-out)."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="overrides")
    user_id = models.CharField(max_length=200)
    enabled = models.BooleanField(help_text="On or off for this user.")
    reason = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: until removed.")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["flag", "user_id"]
        constraints = [models.UniqueConstraint(fields=["flag", "user_id"], name="override_unique_user")]

    def __str__(self) -> str:
        return f"{self.user_id}: {'on' if self.enabled else 'off'}"


class FlagChange(models.Model):
    """One row per change to a flag or its overrides: who, what, before → after, why, when."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="changes")
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=30)  # create | update | kill | revive | override.set | override.clear
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    why = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["flag", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"


class SnapshotVersion(models.Model):
    """A project's flag-set version, bumped in the same transaction as every change.

    The row lock taken by the bump makes version order equal commit order, so a version names
    exactly one state of the project's flags (the ETag relies on that); an id or timestamp of the
    last change would not, because transactions commit out of id order.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="+")
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.project_id}@{self.version}"
