"""Remediation actions: the owner's hooks, risk levels and the record of every step run."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from healing.models.changes import Change
from healing.models.issues import Issue
from healing.models.projects import Project


class RemediationHook(models.Model):
    """An owner-defined webhook Kaizen may call as a remediation step (the `webhook_call` action).

    The secret signs every request and is therefore kept as given (a hash could not sign);
    the console never shows it again after it is saved.
    """

    name = models.SlugField(max_length=100)
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="remediation_hooks",
        help_text="Empty: available to every project (a project's own hook of the same name wins).",
    )
    description = models.TextField(blank=True)
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=200, help_text="Signs each request (HMAC-SHA256).")
    param_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text="JSON Schema of the params a step may send (type, properties, required, "
        "additionalProperties, enum, items, min/maxLength, minimum/maximum, pattern).",
    )
    timeout_seconds = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(120.0)],
        help_text="How long to wait for the answer.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="remediationhook_unique_name"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(project__isnull=True), name="remediationhook_unique_global_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RiskLevel(models.TextChoices):
    """How much harm a change can do if it is wrong: the one scale for remediation actions, code
    patches and the owner's promotion policy."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return RISK_ORDER.index(self)

    @classmethod
    def parse(cls, value: object) -> "RiskLevel":
        """A declared level; anything unrecognised ("critical", a typo) is HIGH: risk fails closed."""
        text = str(value or "").strip().lower()
        return cls(text) if text in cls.values else cls.HIGH


RISK_ORDER = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]


class RemediationOutcome(models.TextChoices):
    RUNNING = "running"  # left so only by a process that died mid-step
    OK = "ok"
    FAILED = "failed"


class RemediationRun(models.Model):
    """One remediation step run (or undone), with what it was given and what came of it."""

    plan_run = models.UUIDField(null=True, blank=True, help_text="The steps of one plan run share it.")
    step = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Position in the plan, from 1.")
    action = models.CharField(max_length=100)
    risk = models.CharField(max_length=10, choices=RiskLevel.choices)
    params = models.JSONField(default=dict, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    issue = models.ForeignKey(Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="remediation_runs")
    change = models.ForeignKey(
        Change, null=True, blank=True, on_delete=models.SET_NULL, related_name="remediation_runs"
    )
    user_id = models.CharField(max_length=200, blank=True, help_text="The affected user the step acted for.")
    actor = models.CharField(max_length=200)
    undo_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undos", help_text="Set on an undo."
    )
    outcome = models.CharField(max_length=10, choices=RemediationOutcome.choices, default=RemediationOutcome.RUNNING)
    detail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="What the action observed (task id, HTTP status…).")
    undo_data = models.JSONField(null=True, blank=True, help_text="What undoing it needs; empty: nothing to undo.")
    undone_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["issue", "-started_at"]),
            models.Index(fields=["change", "-started_at"]),
            models.Index(fields=["plan_run", "step"]),
        ]

    def __str__(self) -> str:
        return f"{'undo ' if self.undo_of_id else ''}{self.action}: {self.outcome}"
