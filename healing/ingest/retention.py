"""Keeping the occurrence table bounded: counts on Issue stay exact, old rows go.

Only the oldest rows go; a redelivered stream entry is minutes old, so the event-id check that
makes storing idempotent still sees it.
"""

from django.conf import settings
from django.db.models import Count

from healing.models import Issue, Occurrence


def occurrences_trim(*, keep: int | None = None) -> int:
    """Delete all but the newest `keep` occurrences of every issue that has more; returns how many."""
    keep = keep or settings.KAIZEN_OCCURRENCES_PER_ISSUE
    deleted = 0
    crowded = Issue.objects.annotate(stored=Count("occurrences")).filter(stored__gt=keep).values_list("id", flat=True)
    for issue_id in crowded:
        newest = Occurrence.objects.filter(issue_id=issue_id).order_by("-id").values_list("id", flat=True)
        cutoff = list(newest[keep : keep + 1])
        if cutoff:
            deleted += Occurrence.objects.filter(issue_id=issue_id, id__lte=cutoff[0]).delete()[0]
    return deleted
