"""The problem reports a project sends, grouped into Issues, and how they are classified."""

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

from healing.models.projects import Project, regexes_check


class IssueType(models.TextChoices):
    ERROR = "ERROR"
    SILENT_FAILURE = "SILENT_FAILURE"
    SLOW_RESPONSE = "SLOW_RESPONSE"
    DATA_INCONSISTENCY = "DATA_INCONSISTENCY"
    AUTH_ISSUE = "AUTH_ISSUE"
    BILLING_ISSUE = "BILLING_ISSUE"
    UX_CONFUSION = "UX_CONFUSION"
    USER_REPORTED = "USER_REPORTED"


class Severity(models.TextChoices):
    # The value is the Celery queue the issue's work goes to.
    P0 = "P0", "P0 critical"
    P1 = "P1", "P1 major"
    P2 = "P2", "P2 degraded"
    P3 = "P3", "P3 minor"


class Stage(models.TextChoices):
    DETECTED = "detected"
    DIAGNOSING = "diagnosing"
    ROOT_CAUSE_FOUND = "root_cause_found"
    NEEDS_INPUT = "needs_input"
    FIXING = "fixing"
    VERIFYING = "verifying"
    DEPLOYED = "deployed"
    # Fixed for the affected user by a per-user remediation; the cause is not fixed for everyone.
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    ABORTED = "aborted"


class EnqueueState(models.TextChoices):
    """The outbox: an Issue needing work is `pending` until the broker took its task."""

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"


class ClassificationRule(models.Model):
    """One row of the classifier: the first enabled rule (by priority) whose conditions all hold
    decides type and base severity. Empty conditions match anything."""

    name = models.CharField(max_length=200)
    priority = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    enabled = models.BooleanField(default=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: applies to every project."
    )
    match_type = models.CharField(
        max_length=32, choices=IssueType.choices, blank=True, help_text="The client's type hint; empty matches any."
    )
    message_regex = models.CharField(max_length=500, blank=True)
    route_regex = models.CharField(max_length=500, blank=True)
    exception_regex = models.CharField(max_length=500, blank=True)
    status_min = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Failing request status ≥ this.")
    status_max = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Failing request status ≤ this.")
    result_type = models.CharField(
        max_length=32, choices=IssueType.choices, blank=True, help_text="Empty: keep the hint."
    )
    severity = models.CharField(max_length=2, choices=Severity.choices)
    escalate_users = models.PositiveIntegerField(
        null=True, blank=True, help_text="Raise severity one level once this many distinct users are affected."
    )
    escalate_occurrences = models.PositiveIntegerField(
        null=True, blank=True, help_text="Raise severity one level once the issue occurred this many times."
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        regexes_check(self, ("message_regex", "route_regex", "exception_regex"))
        if self.status_min is not None and self.status_max is not None and self.status_min > self.status_max:
            raise ValidationError({"status_max": "Must not be below the lowest status."})


class Issue(models.Model):
    """A group of reports sharing a fingerprint. The id is derived from (project, fingerprint), so
    the ingest endpoint can name the issue before the report is written."""

    id = models.UUIDField(primary_key=True, editable=False)
    # Not indexed alone: the (project, fingerprint) constraint and the (project, last_seen) index
    # lead with it. See Occurrence: every index is written by each new issue.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="issues", db_index=False)
    fingerprint = models.CharField(max_length=64)
    grouping = models.TextField(help_text="What the fingerprint was computed from.")
    type = models.CharField(max_length=32, choices=IssueType.choices)
    severity = models.CharField(max_length=2, choices=Severity.choices)
    base_severity = models.CharField(max_length=2, choices=Severity.choices, help_text="Before escalation.")
    severity_pinned = models.BooleanField(
        default=False, help_text="Set by the owner in the console: new reports no longer change the severity."
    )
    rule = models.ForeignKey(ClassificationRule, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=255)
    culprit = models.CharField(max_length=255, blank=True, help_text="Route or function where it happens.")
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.DETECTED)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    occurrence_count = models.PositiveBigIntegerField(default=0)
    affected_users = models.PositiveIntegerField(default=0)
    times_reopened = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    enqueue_state = models.CharField(max_length=10, choices=EnqueueState.choices, default=EnqueueState.NONE)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    enqueue_attempts = models.PositiveIntegerField(default=0)
    # --- Stage deadlines (healing.loop.stages): when the work of the current stage must be done by.
    stage_entered_at = models.DateTimeField(null=True, blank=True)
    stage_deadline = models.DateTimeField(
        null=True, blank=True, help_text="Past it, the sweep resumes the stage's work or escalates; empty: final."
    )
    # A database default: ingest inserts issues in raw SQL that names only its own columns.
    stage_attempts = models.PositiveSmallIntegerField(
        db_default=0, help_text="Times the sweep resumed the current stage after its deadline passed."
    )
    # The latest diagnosis (healing.loop.pipeline): level, root cause, confidence, hypotheses and a
    # code patch if the model proposed one. Nullable: ingest's raw insert does not name it.
    diagnosis = models.JSONField(null=True, blank=True, help_text="The latest diagnosis, as the console shows it.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "fingerprint"], name="issue_unique_fingerprint")]
        indexes = [
            models.Index(fields=["project", "-last_seen"]),
            models.Index(fields=["enqueue_state", "enqueued_at"]),
            models.Index(
                fields=["stage_deadline"], condition=models.Q(stage_deadline__isnull=False), name="issue_stage_deadline"
            ),
            # The console: the issue list's order, and the dashboard's time ranges (today, 14 days).
            # The 14-day charts read only the index (INCLUDE): no table rows are visited.
            models.Index(fields=["-last_seen"], name="issue_last_seen"),
            models.Index(fields=["first_seen"], include=["severity"], name="issue_first_seen"),
            models.Index(fields=["stage_entered_at"], name="issue_stage_entered"),
            models.Index(
                fields=["resolved_at"],
                include=["first_seen"],
                condition=models.Q(resolved_at__isnull=False),
                name="issue_resolved_at",
            ),
            models.Index(
                fields=["stage"], condition=models.Q(stage__in=["escalated", "aborted"]), name="issue_needs_person"
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class IssueUser(models.Model):
    """One row per distinct user an issue affected: keeps `affected_users` exact."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, db_index=False)  # the constraint leads with it
    user_key = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "user_key"], name="issueuser_unique")]


class Occurrence(models.Model):
    """One accepted report. `event_id` is unique within its project (as in Sentry: an SDK's resend
    is the same event even if grouping changed meanwhile, and one project's ids cannot shadow
    another's), which makes storing a report idempotent."""

    event_id = models.UUIDField()
    # The issue's project, repeated so the unique constraint can cover it. Neither foreign key has
    # an index of its own: the constraint leads with the project and an index below with the issue,
    # which serve the look-ups and cascades as well. Every report writes each index of this table
    # (at random places: the ids are random), so an index that adds nothing costs ingest time.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="occurrences", db_index=False)
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="occurrences", db_index=False)
    source = models.CharField(max_length=10)  # native | sentry
    received_at = models.DateTimeField()
    timestamp = models.DateTimeField(null=True, blank=True, help_text="When the client says it happened.")
    user_id = models.CharField(max_length=200, blank=True)
    user_email = models.CharField(max_length=254, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    url = models.TextField(blank=True)
    route = models.CharField(max_length=500, blank=True)
    release = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=64, blank=True)
    message = models.TextField()
    payload = models.JSONField(help_text="The validated report as received.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "event_id"], name="occurrence_unique_project_event")]
        indexes = [
            models.Index(fields=["issue", "-received_at"]),
            models.Index(fields=["event_id"]),
            models.Index(fields=["user_id"]),
            models.Index(Upper("user_email"), name="occurrence_user_email_upper"),
        ]

    def __str__(self) -> str:
        return str(self.event_id)


class IssueEvent(models.Model):
    """The issue's timeline: every stage it went through, read by the console and the user's popup."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="events")
    stage = models.CharField(max_length=20, choices=Stage.choices)
    message = models.TextField(help_text="What the affected user is told.")
    detail = models.TextField(blank=True, help_text="Internal detail for the owner.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


def issue_id_for(*, project_id: int, fingerprint: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kaizen:{project_id}:{fingerprint}")
