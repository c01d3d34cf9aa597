"""The user feedback analyzer: what users report through the help button (USER_REPORTED), what
they answer when asked for more (NEEDS_INPUT), and UX_CONFUSION signals, grouped into themes by
offline text similarity and ranked by frequency × affected users × recency."""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from healing.models import IssueEvent, IssueType, Occurrence, Stage

from .models import FeedbackTheme, ResearchRun
from .similarity import cosine, tfidf_vectors

WINDOW_DAYS = 30
HALF_LIFE_DAYS = 7.0  # a theme last seen a week ago counts half as much as one seen today
CLUSTER_THRESHOLD = 0.35
MAX_REPORTS = 2000


@dataclass
class Report:
    text: str
    user: str
    at: datetime


@dataclass
class Theme:
    reports: list[Report] = field(default_factory=list)
    centroid: dict[str, float] = field(default_factory=dict)

    @property
    def users(self) -> int:
        return len({r.user for r in self.reports if r.user}) or 1

    @property
    def last_seen(self) -> datetime:
        return max(r.at for r in self.reports)

    def label(self) -> str:
        # The theme's heaviest TF-IDF words: what its reports share and others do not.
        top = sorted(self.centroid.items(), key=lambda pair: (-pair[1], pair[0]))[:4]
        return " · ".join(word for word, _ in top) or self.reports[0].text[:80]


def feedback_reports(*, since: datetime) -> list[Report]:
    answered = IssueEvent.objects.filter(
        issue=OuterRef("issue"), stage=Stage.NEEDS_INPUT, created_at__lt=OuterRef("received_at")
    )
    rows = (
        Occurrence.objects.filter(received_at__gte=since)
        .annotate(answer=Exists(answered))
        .filter(Q(issue__type__in=(IssueType.USER_REPORTED, IssueType.UX_CONFUSION)) | Q(answer=True))
        .order_by("-received_at")
        .values_list("message", "payload", "user_id", "user_email", "session_id", "received_at")[:MAX_REPORTS]
    )
    reports = []
    for message, payload, user_id, email, session, at in rows:
        words = payload.get("description") if isinstance(payload, dict) else None
        text = " ".join(part for part in (words or "", message or "") if part).strip()
        if text:
            reports.append(Report(text=text, user=user_id or email or session, at=at))
    return reports


def themes_cluster(*, reports: list[Report], threshold: float = CLUSTER_THRESHOLD) -> list[Theme]:
    """Greedy single pass: a report joins the most similar theme above `threshold`, or starts one."""
    vectors = tfidf_vectors([r.text for r in reports])
    themes: list[Theme] = []
    for report, vector in zip(reports, vectors, strict=True):
        scored = [(cosine(vector, theme.centroid), theme) for theme in themes]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if best[1] is not None and best[0] >= threshold:
            theme = best[1]
            n = len(theme.reports)
            words = set(theme.centroid) | set(vector)
            theme.centroid = {w: (theme.centroid.get(w, 0.0) * n + vector.get(w, 0.0)) / (n + 1) for w in words}
            theme.reports.append(report)
        else:
            themes.append(Theme(reports=[report], centroid=dict(vector)))
    return themes


def theme_rank(*, reports: int, users: int, last_seen: datetime, now: datetime) -> float:
    age_days = max((now - last_seen).total_seconds() / 86400, 0.0)
    return reports * users * math.pow(0.5, age_days / HALF_LIFE_DAYS)


def feedback_analyze(*, run: ResearchRun, now: datetime | None = None, limit: int = 10) -> list[FeedbackTheme]:
    now = now or timezone.now()
    themes = themes_cluster(reports=feedback_reports(since=now - timedelta(days=WINDOW_DAYS)))
    rows = [
        FeedbackTheme(
            run=run,
            label=theme.label()[:300],
            reports=len(theme.reports),
            users=theme.users,
            last_seen=theme.last_seen,
            rank=theme_rank(reports=len(theme.reports), users=theme.users, last_seen=theme.last_seen, now=now),
            examples=[r.text[:300] for r in theme.reports[:5]],
        )
        for theme in themes
    ]
    rows.sort(key=lambda row: row.rank, reverse=True)
    return FeedbackTheme.objects.bulk_create(rows[:limit])
