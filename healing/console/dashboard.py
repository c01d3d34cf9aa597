"""The healing figures of the console's dashboard: today's issues, MTTR and issues per day.

Each figure is one aggregate query over an indexed time range (migration 0009 adds the indexes),
so the dashboard costs the same with a hundred issues or a million. Days are the owner's
(KAIZEN_OWNER_TIMEZONE), as everywhere the owner reads a date.
"""

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import TruncDate

from healing.models import IngestDeadLetter, Issue, Severity, Stage

TREND_DAYS = 14
# Fixed: for everyone (resolved), or for the users who met it (mitigated), or shipped and watched.
FIXED = (Stage.RESOLVED, Stage.MITIGATED, Stage.DEPLOYED)
# Waiting for the owner: Kaizen gave up (escalated) or its fix did not hold (aborted).
NEEDS_PERSON = (Stage.ESCALATED, Stage.ABORTED)


def owner_zone() -> ZoneInfo:
    return ZoneInfo(settings.KAIZEN_OWNER_TIMEZONE)


def day_start(*, now: datetime, days_back: int = 0) -> datetime:
    """Midnight in the owner's zone, `days_back` days before today."""
    today = now.astimezone(owner_zone()).date() - timedelta(days=days_back)
    return datetime.combine(today, datetime.min.time(), tzinfo=owner_zone())


def trend_days(*, now: datetime, days: int = TREND_DAYS) -> list[date]:
    """The last `days` days of the owner, oldest first, today last."""
    today = now.astimezone(owner_zone()).date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def issues_today(*, now: datetime) -> dict[str, int]:
    """Issues active today (a report or a stage move since midnight), by where they stand now,
    and every issue waiting for a person whatever its age. Two queries: today's rows through a
    bitmap OR of two indexes, and a count read from the partial index of the waiting ones."""
    start = day_start(now=now)
    figures = Issue.objects.filter(Q(last_seen__gte=start) | Q(stage_entered_at__gte=start)).aggregate(
        new=Count("id", filter=Q(first_seen__gte=start)),
        fixed=Count("id", filter=Q(stage__in=FIXED)),
        escalated=Count("id", filter=Q(stage__in=NEEDS_PERSON)),
        pending=Count("id", filter=~Q(stage__in=FIXED + NEEDS_PERSON)),
    )
    figures["needs_person"] = Issue.objects.filter(stage__in=NEEDS_PERSON).count()
    return figures


def mttr_trend(*, now: datetime, days: int = TREND_DAYS) -> list[dict[str, Any]]:
    """Per day, the issues resolved that day and their mean time from first report to resolution
    (None on a day nothing was resolved: no resolution is not a zero-minute one)."""
    rows = (
        Issue.objects.filter(resolved_at__gte=day_start(now=now, days_back=days - 1))
        .annotate(day=TruncDate("resolved_at", tzinfo=owner_zone()))
        .values("day")
        .annotate(
            resolved=Count("id"),
            mttr=Avg(ExpressionWrapper(F("resolved_at") - F("first_seen"), output_field=DurationField())),
        )
    )
    by_day = {row["day"]: row for row in rows}
    return [
        {
            "day": day,
            "resolved": by_day[day]["resolved"] if day in by_day else 0,
            "seconds": by_day[day]["mttr"].total_seconds() if day in by_day else None,
        }
        for day in trend_days(now=now, days=days)
    ]


def issues_per_day(*, now: datetime, days: int = TREND_DAYS) -> list[dict[str, Any]]:
    """New issues per day (by first report), counted per severity."""
    rows = (
        Issue.objects.filter(first_seen__gte=day_start(now=now, days_back=days - 1))
        .annotate(day=TruncDate("first_seen", tzinfo=owner_zone()))
        .values("day", "severity")
        .annotate(n=Count("id"))
    )
    counts = {(row["day"], row["severity"]): row["n"] for row in rows}
    return [
        {"day": day, **{severity: counts.get((day, severity), 0) for severity in Severity.values}}
        for day in trend_days(now=now, days=days)
    ]


def dead_letters_waiting() -> int:
    """Reports the ingest consumer could not store and nobody stored again yet (a small table)."""
    return IngestDeadLetter.objects.filter(stored_at=None).count()


def issue_figures(*, now: datetime) -> dict[str, Any]:
    """The healing panel of the dashboard: five queries."""
    return {
        "today": issues_today(now=now),
        "mttr": mttr_trend(now=now),
        "per_day": issues_per_day(now=now),
        "dead_letters": dead_letters_waiting(),
    }
