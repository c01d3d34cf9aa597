"""What the project shares across apps: the log of every call made to a language model."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class LLMCall(models.Model):
    """One attempt at one LLM request (each retry is its own row), whatever its outcome.

    `prompt_fingerprint` hashes the prompt's template and the output schema, never the data, so
    rows group by prompt version: a change to the wording or the schema starts a new fingerprint.
    """

    purpose = models.CharField(max_length=50, help_text='What the call was for, e.g. "diagnosis".')
    model = models.CharField(max_length=100)
    prompt_fingerprint = models.CharField(max_length=64, help_text="sha256 of the template and schema.")
    attempt = models.PositiveSmallIntegerField(default=1, help_text="1 for the first try, 2 for the re-ask.")
    issue_id = models.UUIDField(null=True, blank=True, db_index=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0, help_text="Including the SDK's own retries.")
    cost_usd = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="Estimate; empty when the model is unpriced."
    )
    valid = models.BooleanField(default=False, help_text="An answer came back and passed validation.")
    error = models.TextField(blank=True, help_text="Why the call failed or its answer was rejected.")
    request_id = models.CharField(max_length=100, blank=True, help_text="The vendor's id, for support requests.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "LLM call"

    def __str__(self) -> str:
        outcome = "valid" if self.valid else (self.error[:60] or "invalid")
        return f"{self.purpose} #{self.attempt} {self.model}: {outcome}"


class AdminSession(models.Model):
    """One console sign-in: where from, on what, until when. The owner revokes one in the console
    and that browser is signed out at its next request (kaizen_site.security.sessions)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_sessions")
    session_key = models.CharField(max_length=40, unique=True, help_text="Django's session key (never shown).")
    fingerprint = models.CharField(
        max_length=64, db_index=True, help_text="sha256 of the user agent and accepted languages: the same browser."
    )
    user_agent = models.CharField(max_length=500, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "admin session"

    def __str__(self) -> str:
        return f"{self.user} from {self.ip or 'unknown address'} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()
