"""Feature flags, per-user overrides, and the history of every change made to them.

Rows are written only through `flags.services`, which records each change (FlagChange + the
audit log) and bumps the project's SnapshotVersion so every process reloads its snapshot.
"""

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from healing.models import Project, RiskLevel

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


# --- Progressive rollout (flags.rollout.engine) -------------------------------------------------------

from django.core.exceptions import ValidationError  # noqa: E402
from django.db.models.functions import Coalesce  # noqa: E402

from healing.models import Change, Issue  # noqa: E402


class RolloutPhase(models.TextChoices):
    CANARY = "canary"  # the flag on for the affected user only
    PARTIAL = "partial"  # a percentage of users
    FULL = "full"  # everyone, still watched
    DONE = "done"
    ROLLED_BACK = "rolled_back", "rolled back"


ACTIVE_PHASES = (RolloutPhase.CANARY, RolloutPhase.PARTIAL, RolloutPhase.FULL)


class ApprovalState(models.TextChoices):
    NONE = "", "—"
    AWAITING = "awaiting_approval", "awaiting approval"


class Rollout(models.Model):
    """One Change's progressive rollout behind its flag: canary → partial → full → done, or
    rolled back. `phase` moves only by a conditional UPDATE in flags.rollout.engine, which is what makes
    a duplicate or stale advance do nothing."""

    change = models.OneToOneField(Change, on_delete=models.PROTECT, related_name="rollout")
    flag = models.ForeignKey(Flag, on_delete=models.PROTECT, related_name="rollouts")
    phase = models.CharField(max_length=12, choices=RolloutPhase.choices, default=RolloutPhase.CANARY)
    phase_started_at = models.DateTimeField()
    canary_seconds = models.PositiveIntegerField(default=5 * 60)
    partial_seconds = models.PositiveIntegerField(default=30 * 60)
    full_seconds = models.PositiveIntegerField(
        default=30 * 60, help_text="How long everyone has it, still watched, before the rollout is done."
    )
    partial_percentage = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(99)]
    )
    exposure_percentage = models.PositiveSmallIntegerField(
        default=0, help_text="Share of all users who have the flag now (the canary's one user counts as 0)."
    )
    affected_user_id = models.CharField(max_length=200, help_text="The user who reported the issue: the canary.")
    target_attributes = models.JSONField(
        default=dict,
        blank=True,
        help_text="The affected user's plan/config attributes from their report (recorded, not yet targeted).",
    )
    reached_users = models.JSONField(
        default=dict,
        blank=True,
        help_text="Users who met the bug while the fix was at canary or partial and were given it at once, "
        "like the canary (user id → when). Their overrides end with the rollout.",
    )
    issue = models.ForeignKey(
        Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts", help_text="Watched."
    )
    fingerprint = models.CharField(max_length=64, blank=True, help_text="The watched issue's fingerprint.")
    watched_count_at_phase_start = models.PositiveBigIntegerField(default=0)
    watched_allowance = models.PositiveIntegerField(
        default=0, help_text="New occurrences of the watched issue among exposed users tolerated per phase."
    )
    error_rate_threshold = models.FloatField(
        default=2.0, help_text="Degraded when exposed users' error rate exceeds this multiple of the baseline."
    )
    baseline_error_rate = models.FloatField(default=0.0, help_text="ERROR reports per minute before the rollout.")
    phase_new_occurrences = models.PositiveIntegerField(
        default=0, help_text="New occurrences of the watched issue among exposed users, this phase (last check)."
    )
    health_notes = models.TextField(blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    approval_state = models.CharField(max_length=20, choices=ApprovalState.choices, default="", blank=True)
    approval_reasons = models.JSONField(default=list, blank=True)
    approval_requested_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A flag carries one rollout at a time: two would fight over its percentage.
            models.UniqueConstraint(
                fields=["flag"], condition=Q(phase__in=ACTIVE_PHASES), name="rollout_one_active_per_flag"
            ),
            models.CheckConstraint(
                condition=Q(canary_seconds__gt=0) & Q(partial_seconds__gt=0) & Q(full_seconds__gt=0),
                name="rollout_durations_positive",
            ),
            models.CheckConstraint(
                condition=Q(partial_percentage__gte=1) & Q(partial_percentage__lte=99),
                name="rollout_partial_1_99",
            ),
        ]
        indexes = [models.Index(fields=["phase", "phase_started_at"])]

    def __str__(self) -> str:
        return f"{self.change.key} {self.phase}"

    def phase_seconds(self, phase: str | None = None) -> int | None:
        return {
            RolloutPhase.CANARY: self.canary_seconds,
            RolloutPhase.PARTIAL: self.partial_seconds,
            RolloutPhase.FULL: self.full_seconds,
        }.get(phase or self.phase)


class RolloutStep(models.Model):
    """One phase move of a rollout, append-only: from → to, when, by whom, and the health seen.
    Unique per transition, so the database itself refuses a repeated step."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="steps")
    from_phase = models.CharField(
        max_length=12, choices=RolloutPhase.choices, blank=True, help_text="Empty: the start."
    )
    to_phase = models.CharField(max_length=12, choices=RolloutPhase.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=200, help_text='A username, or "kaizen" for automatic moves.')
    outcome = models.CharField(max_length=20)  # started | promoted | approved | completed | rolled_back
    why = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="The health seen when the step was taken.")

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "from_phase", "to_phase"], name="rolloutstep_unique_move")
        ]

    def __str__(self) -> str:
        return f"{self.from_phase or '·'} → {self.to_phase}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValidationError("Rollout steps are append-only: a step cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Rollout steps are append-only: a step cannot be deleted.")


class PromotionPolicy(models.Model):
    """What the owner lets Kaizen promote without asking: checked before every promotion of a
    rollout (flags.rollout.promotion.policy_check). One row per project, and one with no project that
    applies to every project without its own."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: the default for every project."
    )
    max_auto_risk = models.CharField(
        max_length=6,
        choices=RiskLevel.choices,
        default=RiskLevel.LOW,
        help_text="Highest risk a change may have to be promoted with no human.",
    )
    max_auto_exposure = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Largest share of users (%) a promotion may reach without the owner's approval.",
    )
    daily_llm_budget_usd = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=10,
        validators=[MinValueValidator(0)],
        help_text="Promotions wait for approval once today's LLM spend is over this.",
    )
    blocked_from_hour = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(23)],
        help_text="Start of the hours with no automatic promotion (owner's timezone, 0–23); empty: none.",
    )
    blocked_to_hour = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(23)],
        help_text="End of those hours (exclusive); 22 → 7 spans midnight.",
    )
    updated_by = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "promotion policies"
        constraints = [
            # Coalesce: NULLs are distinct in a plain unique index, so there could be two defaults.
            models.UniqueConstraint(
                Coalesce("project", 0),
                name="promotionpolicy_one_per_project",
                violation_error_message="There is a policy for this project already (or a default one, for none).",
            ),
        ]

    def __str__(self) -> str:
        return f"Promotion policy ({self.project or 'default'})"

    def clean(self) -> None:
        if (self.blocked_from_hour is None) != (self.blocked_to_hour is None):
            raise ValidationError("Give both ends of the blocked hours, or neither.")
        if self.blocked_from_hour is not None and self.blocked_from_hour == self.blocked_to_hour:
            raise ValidationError({"blocked_to_hour": "Must differ from the start (use empty for no blocked hours)."})
