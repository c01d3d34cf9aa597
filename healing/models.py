"""Tenants, their keys, and the problem reports they send (grouped into Issues)."""

import hashlib
import re
import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone


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


def _new_public_key() -> str:
    return secrets.token_hex(16)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Project(models.Model):
    """A monitored product (tenant). The integer id is the Sentry DSN's project id."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text='Browser origins allowed to report, e.g. ["https://app.example.com"].'
    )
    rate_limit_per_minute = models.PositiveIntegerField(default=6000, help_text="Reports accepted per minute.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        origins = self.allowed_origins
        if not isinstance(origins, list) or not all(isinstance(o, str) and _is_origin(o) for o in origins):
            raise ValidationError(
                {
                    "allowed_origins": 'A list of origins (scheme, host and port only), such as "https://app.example.com".'
                }
            )


def regexes_check(instance: models.Model, fields: tuple[str, ...]) -> None:
    """The rules and patterns the owner edits hold regular expressions: refuse one that does not compile."""
    for field in fields:
        try:
            re.compile(getattr(instance, field))
        except re.error as exc:
            raise ValidationError({field: f"Not a valid regular expression: {exc}"}) from exc


def _is_origin(value: str) -> bool:
    """What a browser sends as Origin: scheme://host[:port], nothing after it."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.rstrip("/"))
    return (
        parts.scheme in ("http", "https") and bool(parts.netloc) and not (parts.path or parts.query or parts.fragment)
    )


class ProjectKey(models.Model):
    """A key pair: the public key goes in the browser and the DSN; the secret authenticates the
    owner's server calls and is stored only as a hash (shown once, at creation)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    public_key = models.CharField(max_length=32, unique=True, default=_new_public_key)
    secret_hash = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.public_key[:8]}… ({'active' if self.is_active else 'revoked'})"


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
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="issues")
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
    # --- Stage deadlines (healing.stages): when the work of the current stage must be done by.
    stage_entered_at = models.DateTimeField(null=True, blank=True)
    stage_deadline = models.DateTimeField(
        null=True, blank=True, help_text="Past it, the sweep resumes the stage's work or escalates; empty: final."
    )
    # A database default: ingest inserts issues in raw SQL that names only its own columns.
    stage_attempts = models.PositiveSmallIntegerField(
        db_default=0, help_text="Times the sweep resumed the current stage after its deadline passed."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "fingerprint"], name="issue_unique_fingerprint")]
        indexes = [
            models.Index(fields=["project", "-last_seen"]),
            models.Index(fields=["enqueue_state", "enqueued_at"]),
            models.Index(
                fields=["stage_deadline"], condition=models.Q(stage_deadline__isnull=False), name="issue_stage_deadline"
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class IssueUser(models.Model):
    """One row per distinct user an issue affected: keeps `affected_users` exact."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE)
    user_key = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issue", "user_key"], name="issueuser_unique")]


class Occurrence(models.Model):
    """One accepted report. `event_id` is unique within its project (as in Sentry: an SDK's resend
    is the same event even if grouping changed meanwhile, and one project's ids cannot shadow
    another's), which makes storing a report idempotent."""

    event_id = models.UUIDField()
    # The issue's project, repeated so the unique constraint can cover it.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="occurrences")
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="occurrences")
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


class AuditEntry(models.Model):
    """Every owner action and every automatic action, append-only."""

    actor = models.CharField(max_length=200, help_text='A username, or "kaizen" for automatic actions.')
    action = models.CharField(max_length=100)
    target = models.CharField(max_length=200)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit entries"


def issue_id_for(*, project_id: int, fingerprint: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kaizen:{project_id}:{fingerprint}")


# --- Changes (Kaizen tickets) -----------------------------------------------------------------

from django.core.validators import MaxValueValidator, MinValueValidator  # noqa: E402


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
    """Where the Change's code patch is: Kaizen never applies one itself (see healing.patch_executor)."""

    NONE = "none"
    AWAITING_APPROVAL = "awaiting_approval", "waiting for the owner's approval"
    APPROVED = "approved", "approved by the owner"
    SENDING = "sending", "being sent to the executor"
    SUBMITTED = "submitted", "accepted by the executor"
    FAILED = "failed"


CHANGE_KEY_PREFIX = "KAIZ-"


class Change(models.Model):
    """A Kaizen ticket: one change to production behaviour, from plan to canary to done.

    `number` is the sequence behind the display id (KAIZ-001); healing.changes assigns it and
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
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-number"]
        indexes = [models.Index(fields=["status", "-updated_at"])]

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


# --- Error patterns, remediation actions, learned incidents -------------------------------------


class ErrorPattern(models.Model):
    """A known problem and its fix: when a new issue matches with enough confidence, its
    remediation plan is applied at once, without asking the LLM (see healing.patterns).

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


# --- Root-cause write-ups -----------------------------------------------------------------------


class RcaSource(models.TextChoices):
    TEMPLATE = "template"
    LLM = "llm"


class RcaStatus(models.TextChoices):
    DRAFT = "draft"
    APPROVED = "approved"


class RootCauseAnalysis(models.Model):
    """The write-up of a P0/P1 incident: a draft Kaizen writes (see healing.rca), then the text the
    owner approved. How far the owner had to edit it, and for how long, says how good drafts are."""

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="rcas")
    change = models.ForeignKey(Change, null=True, blank=True, on_delete=models.SET_NULL, related_name="rcas")
    draft = models.TextField(help_text="As Kaizen wrote it (markdown).")
    source = models.CharField(max_length=10, choices=RcaSource.choices)
    approved = models.TextField(blank=True, help_text="As the owner approved it (markdown); empty until then.")
    status = models.CharField(max_length=10, choices=RcaStatus.choices, default=RcaStatus.DRAFT)
    drafted_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True, help_text="When the owner first opened the draft.")
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.CharField(max_length=200, blank=True)
    edit_distance = models.PositiveIntegerField(
        null=True, blank=True, help_text="Characters changed between the draft and the approved text."
    )
    seconds_spent = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the first opening of the draft to its approval."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "root-cause analysis"
        verbose_name_plural = "root-cause analyses"
        # One write-up per issue and change; NULL changes are not distinct from one another here,
        # so an issue fixed without a Change still gets only one.
        constraints = [
            models.UniqueConstraint(fields=["issue", "change"], name="rca_unique_issue_change"),
            models.UniqueConstraint(
                fields=["issue"], condition=models.Q(change__isnull=True), name="rca_unique_issue_without_change"
            ),
        ]

    def __str__(self) -> str:
        return f"RCA {self.status}: {self.issue.title if self.issue_id else '—'}"


# --- Ingest dead letters ------------------------------------------------------------------------


class IngestDeadLetter(models.Model):
    """A stream entry the consumer could not store, even alone and retried: kept whole, so nothing
    accepted is dropped silently, and so the owner can see why and store it again once fixed."""

    entry_id = models.CharField(max_length=40, help_text="The entry's id in the Redis stream.")
    stream = models.CharField(max_length=200)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event_id = models.UUIDField(null=True, blank=True)
    # Bytes, not text: a poison entry may hold what a text column refuses (a NUL, bad UTF-8).
    raw = models.BinaryField(help_text="The entry's fields exactly as they were in the stream (JSON).")
    error = models.TextField()
    attempts = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    stored_at = models.DateTimeField(null=True, blank=True, help_text="When a retry from the console stored it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at"])]

    def __str__(self) -> str:
        return f"dead letter {self.entry_id}"
