"""Changes (Kaizen tickets): the components they touch and their promotion log."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from healing.models.issues import Issue, Severity


class Component(models.Model):
    """A part of the product a Change touches (checkout, auth, the canary…), with who owns it,
    what it promises (SLO targets) and how a change to it is undone by default."""

    id = models.SlugField(primary_key=True, max_length=100)
    name = models.CharField(max_length=200)
    tier = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(3)], help_text="1: business-critical … 3: peripheral."
    )
    owner = models.CharField(max_length=200, blank=True)
    slo = models.JSONField(default=dict, blank=True, help_text='SLO targets by metric, e.g. {"error_rate": 0.01}.')
    rollback_plan = models.TextField(blank=True, help_text="Used by a Change on this component that names none.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(tier__gte=1) & models.Q(tier__lte=3), name="component_tier_1_3")
        ]

    def __str__(self) -> str:
        return self.id


class ChangeStatus(models.TextChoices):
    DRAFT = "draft"
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    IN_REVIEW = "in_review"
    CANARY = "canary"
    COMPLETE = "complete"
    ABORTED = "aborted"


class PatchState(models.TextChoices):
    """Where the Change's code patch is: Kaizen never applies one itself (see healing.changes.patch_executor)."""

    NONE = "none"
    AWAITING_APPROVAL = "awaiting_approval", "waiting for the owner's approval"
    APPROVED = "approved", "approved by the owner"
    SENDING = "sending", "being sent to the executor"
    SUBMITTED = "submitted", "accepted by the executor"
    FAILED = "failed"


CHANGE_KEY_PREFIX = "KAIZ-"


class Change(models.Model):
    """A Kaizen ticket: one change to production behaviour, from plan to canary to done.

    `number` is the sequence behind the display id (KAIZ-001); healing.changes.lifecycle assigns it and
    moves `status` — through the promotion log, never by saving this row.
    """

    number = models.PositiveIntegerField(unique=True, editable=False)
    title = models.CharField(max_length=255)
    component = models.ForeignKey(Component, null=True, blank=True, on_delete=models.PROTECT, related_name="changes")
    owner = models.CharField(max_length=200, blank=True)
    severity = models.CharField(max_length=2, choices=Severity.choices)
    objective = models.TextField(blank=True)
    success_criteria = models.TextField(blank=True)
    abort_criteria = models.TextField(blank=True)
    rollback_plan = models.TextField(blank=True)
    plan = models.JSONField(
        default=list, blank=True, help_text='Remediation actions, in order: [{"action": …, "params": {…}}].'
    )
    patch_summary = models.TextField(blank=True, help_text="What the code patch does (markdown).")
    patch_diff = models.TextField(blank=True, help_text="The code patch (unified diff).")
    issue = models.ForeignKey(Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes")
    flag_key = models.CharField(max_length=100, blank=True, help_text="The feature flag the change rolls out behind.")
    status = models.CharField(max_length=12, choices=ChangeStatus.choices, default=ChangeStatus.DRAFT)
    scorecard = models.JSONField(default=dict, blank=True, help_text="Verification results, metrics before/after.")
    patch_state = models.CharField(max_length=20, choices=PatchState.choices, default=PatchState.NONE)
    patch_build_id = models.CharField(max_length=200, blank=True)
    patch_error = models.TextField(blank=True)
    patch_submitted_at = models.DateTimeField(null=True, blank=True)
    patch_approved_by = models.CharField(max_length=200, blank=True)
    patch_approved_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="A draft planned for later: the schedule sweep starts it at this time."
    )
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-number"]
        indexes = [
            models.Index(fields=["status", "-updated_at"]),
            models.Index(
                fields=["scheduled_for"],
                condition=models.Q(scheduled_for__isnull=False, status="draft"),
                name="change_scheduled_draft",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"

    @property
    def key(self) -> str:
        return change_key(self.number)


def change_key(number: int) -> str:
    return f"{CHANGE_KEY_PREFIX}{number:03d}"


class PromotionLogEntry(models.Model):
    """One status move of a Change, append-only: who or what moved it, from → to, when and why."""

    change = models.ForeignKey(Change, on_delete=models.PROTECT, related_name="promotions")
    actor = models.CharField(max_length=200, help_text='A username, or "kaizen" for automatic moves.')
    from_status = models.CharField(
        max_length=12, choices=ChangeStatus.choices, blank=True, help_text="Empty: the change was created."
    )
    to_status = models.CharField(max_length=12, choices=ChangeStatus.choices)
    why = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "promotion log entries"

    def __str__(self) -> str:
        return f"{self.from_status or '·'} → {self.to_status}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValidationError("The promotion log is append-only: an entry cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("The promotion log is append-only: an entry cannot be deleted.")
