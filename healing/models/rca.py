"""Root-cause write-ups."""

from django.db import models
from django.utils import timezone

from healing.models.changes import Change
from healing.models.issues import Issue


class RcaSource(models.TextChoices):
    TEMPLATE = "template"
    LLM = "llm"


class RcaStatus(models.TextChoices):
    DRAFT = "draft"
    APPROVED = "approved"


class RootCauseAnalysis(models.Model):
    """The write-up of a P0/P1 incident: a draft Kaizen writes (see healing.loop.rca), then the text the
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
