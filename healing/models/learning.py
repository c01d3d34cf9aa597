"""Error patterns and the incidents they are learned from."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from healing.models.changes import Change
from healing.models.issues import Issue, IssueType
from healing.models.projects import Project, regexes_check


class ErrorPattern(models.Model):
    """A known problem and its fix: when a new issue matches with enough confidence, its
    remediation plan is applied at once, without asking the LLM (see healing.loop.patterns).

    Filled conditions (type, regexes) must all hold; the fingerprint and the example texts are
    evidence that raises the confidence. Learned patterns come from resolved incidents.
    """

    name = models.CharField(max_length=200)
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="error_patterns",
        help_text="Empty: applies to every project.",
    )
    description = models.TextField(blank=True)
    match_type = models.CharField(
        max_length=32, choices=IssueType.choices, blank=True, help_text="The issue's type; empty matches any."
    )
    exception_regex = models.CharField(max_length=500, blank=True, help_text="Searched in the exception type.")
    message_regex = models.CharField(
        max_length=500, blank=True, help_text="Searched in the message, the exception value and the user's words."
    )
    route_regex = models.CharField(
        max_length=500, blank=True, help_text="Searched in the route, the URL and the failing request's path."
    )
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="An issue with exactly this fingerprint matches for sure."
    )
    example_text = models.TextField(
        blank=True,
        help_text="What a report of this problem says, one example per line; new reports are compared to these "
        "and to the symptoms of the incidents this pattern fixed.",
    )
    remediation = models.JSONField(
        default=list, blank=True, help_text='The fix, in order: [{"action": …, "params": {…}}].'
    )
    confidence_threshold = models.FloatField(
        default=0.75,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="The fix is applied when the match's confidence (0–1) reaches this.",
    )
    hits = models.PositiveIntegerField(default=0, help_text="Times it matched an issue.")
    successes = models.PositiveIntegerField(default=0, help_text="Fixes that worked (since last re-enabled).")
    failures = models.PositiveIntegerField(default=0, help_text="Fixes that failed (since last re-enabled).")
    last_used_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    auto_disabled = models.BooleanField(default=False, help_text="Switched off by Kaizen: its fixes kept failing.")
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.CharField(max_length=200, default="kaizen")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["project", "fingerprint"])]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        regexes_check(self, ("message_regex", "route_regex", "exception_regex"))
        conditions = (self.match_type, self.message_regex, self.route_regex, self.exception_regex)
        if not any(conditions) and not self.fingerprint and not self.example_text.strip():
            raise ValidationError("Give at least one condition, a fingerprint or an example text.")


class IncidentOutcome(models.TextChoices):
    FIXED = "fixed"
    MITIGATED = "mitigated", "mitigated (fixed for the affected user only)"
    FIX_FAILED = "fix_failed", "fix failed"


class Incident(models.Model):
    """A finished incident, as learned from: symptoms → cause → fix → outcome. One per Change."""

    issue = models.ForeignKey(Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    change = models.OneToOneField(Change, on_delete=models.CASCADE, related_name="incident")
    pattern = models.ForeignKey(
        ErrorPattern, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    symptoms = models.TextField(help_text="What the reports said, normalized.")
    root_cause = models.TextField(blank=True)
    fix_plan = models.JSONField(default=list, blank=True)
    fix_summary = models.TextField(blank=True, help_text="The code patch's summary, when there was one.")
    outcome = models.CharField(max_length=12, choices=IncidentOutcome.choices)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["pattern", "outcome"])]

    def __str__(self) -> str:
        return f"{self.outcome}: {self.symptoms[:80]}"
