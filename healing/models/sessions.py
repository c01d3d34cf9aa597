"""The end users' browser sessions and what Kaizen tells them in real time.

A session is minted by the server (healing.stream.sessions), never named by the page, so a
stream token for one session can never be made to read another's. Every message for a session is
a SessionEvent row first: the database is what a reconnecting browser resumes from (its
`Last-Event-ID` is the row's id); Redis only wakes the streams.
"""

from datetime import timedelta

from django.db import models
from django.utils import timezone

from healing.models.issues import Issue, IssueType
from healing.models.projects import Project

# "Active now": a session whose page streamed, refreshed its token or reported within this window
# (an open stream touches its session every minute).
ACTIVE_WINDOW = timedelta(minutes=5)


class UserSession(models.Model):
    """One browser session of one of the product's users (a tab group sharing localStorage)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="user_sessions")
    session_id = models.CharField(max_length=64, unique=True, help_text="Minted by the server.")
    user_id = models.CharField(max_length=200, blank=True)
    user_name = models.CharField(max_length=200, blank=True)
    user_email = models.CharField(max_length=254, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-last_seen_at"]),
            models.Index(fields=["user_id"]),
            # The console's dashboard: who is active now, across projects.
            models.Index(fields=["last_seen_at"], name="session_last_seen"),
        ]

    def __str__(self) -> str:
        who = self.user_name or self.user_email or self.user_id or "anonymous"
        return f"{who} ({self.session_id[:8]}…)"


class SessionEventKind(models.TextChoices):
    STATUS = "status"  # where the issue the user met stands
    MESSAGE = "message"  # the owner's own words
    COMMAND = "command"  # something for the page to do (retry, refresh_token, reload, show_message)


class SessionEvent(models.Model):
    """One message down a session's stream; its id is the SSE event id."""

    session = models.ForeignKey(UserSession, on_delete=models.CASCADE, related_name="events")
    issue = models.ForeignKey(Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=10, choices=SessionEventKind.choices)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # A stream resumes with `session = S AND id > N`; the rate limit counts a session's
        # recent events on the same index.
        indexes = [models.Index(fields=["session", "id"], name="sessionevent_session_id")]


class MessageStage(models.TextChoices):
    """What a user-facing message is about: the issue stages the user sees, plus the request to
    reproduce the problem with recording on."""

    DETECTED = "DETECTED"
    DIAGNOSING = "DIAGNOSING"
    ROOT_CAUSE_FOUND = "ROOT_CAUSE_FOUND"
    FIXING = "FIXING"
    VERIFYING = "VERIFYING"
    RESOLVED = "RESOLVED", "RESOLVED (deployed, mitigated or resolved: Fixed)"
    NEEDS_INPUT = "NEEDS_INPUT"
    REPRODUCTION_REQUEST = "REPRODUCTION_REQUEST"
    ESCALATED = "ESCALATED", "ESCALATED (or aborted: a person takes over)"


class MessageTemplate(models.Model):
    """The words a user reads at a stage, editable by the owner. Markdown; `{name}` is the user's
    name (or "there"). A template for the issue's type wins over the one for every type."""

    stage = models.CharField(max_length=24, choices=MessageStage.choices)
    issue_type = models.CharField(
        max_length=32, choices=IssueType.choices, blank=True, help_text="Empty: for every issue type."
    )
    text = models.TextField(help_text="Markdown. Placeholders: {name}.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stage", "issue_type"], name="messagetemplate_unique")]
        ordering = ["stage", "issue_type"]

    def __str__(self) -> str:
        return f"{self.stage} / {self.issue_type or 'any type'}"


class SessionRecording(models.Model):
    """rrweb events the user agreed to record while trying again, for the console's player."""

    session = models.ForeignKey(UserSession, on_delete=models.CASCADE, related_name="recordings")
    issue = models.ForeignKey(Issue, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings")
    events = models.JSONField()
    size_bytes = models.PositiveIntegerField()
    event_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["issue", "-created_at"])]
