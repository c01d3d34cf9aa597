"""Ingest dead letters."""

from django.db import models
from django.utils import timezone

from healing.models.projects import Project


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
