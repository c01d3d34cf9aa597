"""The healing figures of the console's dashboard: today's issues, MTTR and issues per day.

Each figure is one aggregate query over an indexed time range (migration 0009 adds the indexes),
so the number of queries is the same with a hundred issues or a million; the trend charts read
their past days from the cache, so a render aggregates only today's rows. Days are the owner's
(KAIZEN_OWNER_TIMEZONE), as everywhere the owner reads a date.
"""

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import TruncDate

from healing.models import ACTIVE_WINDOW, IngestDeadLetter, Issue, Severity, Stage, UserSession

TREND_DAYS = 14
# The trend charts' days before today are read from the database at most this often.
PAST_DAYS_CACHE_SECONDS = 300
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


def _days_split(*, name: str, now: datetime, days: int, rows: Callable[..., dict]) -> dict:
    """`rows(start=…, end=…)` over the trend's days: the days before today from the cache (they
    hardly change, and they are most of the rows), today's from the database on every render.

    The cached part is keyed by its first day, so it is recomputed when the owner's day turns, and
    at the latest after PAST_DAYS_CACHE_SECONDS (a late severity change still shows)."""
    today = day_start(now=now)
    first = day_start(now=now, days_back=days - 1)
    key = f"kaizen:dashboard:{name}:{settings.KAIZEN_OWNER_TIMEZONE}:{first.isoformat()}:{days}"
    past = cache.get(key)
    if past is None:
        past = rows(start=first, end=today)
        cache.set(key, past, PAST_DAYS_CACHE_SECONDS)
    return {**past, **rows(start=today, end=None)}


def _mttr_rows(*, start: datetime, end: datetime | None) -> dict[date, tuple[int, float]]:
    issues = Issue.objects.filter(resolved_at__gte=start)
    if end is not None:
        issues = issues.filter(resolved_at__lt=end)
    rows = (
        issues.annotate(day=TruncDate("resolved_at", tzinfo=owner_zone()))
        .values("day")
        # COUNT(*), not COUNT(id): the covering index then answers without reading the table.
        .annotate(
            resolved=Count("*"),
            mttr=Avg(ExpressionWrapper(F("resolved_at") - F("first_seen"), output_field=DurationField())),
        )
    )
    return {row["day"]: (row["resolved"], row["mttr"].total_seconds()) for row in rows}


def mttr_trend(*, now: datetime, days: int = TREND_DAYS) -> list[dict[str, Any]]:
    """Per day, the issues resolved that day and their mean time from first report to resolution
    (None on a day nothing was resolved: no resolution is not a zero-minute one)."""
    by_day = _days_split(name="mttr", now=now, days=days, rows=_mttr_rows)
    return [
        {"day": day, "resolved": by_day.get(day, (0, None))[0], "seconds": by_day.get(day, (0, None))[1]}
        for day in trend_days(now=now, days=days)
    ]


def _per_day_rows(*, start: datetime, end: datetime | None) -> dict[tuple[date, str], int]:
    issues = Issue.objects.filter(first_seen__gte=start)
    if end is not None:
        issues = issues.filter(first_seen__lt=end)
    rows = (
        issues.annotate(day=TruncDate("first_seen", tzinfo=owner_zone()))
        .values("day", "severity")
        .annotate(n=Count("*"))  # as above: read from the covering index
    )
    return {(row["day"], row["severity"]): row["n"] for row in rows}


def issues_per_day(*, now: datetime, days: int = TREND_DAYS) -> list[dict[str, Any]]:
    """New issues per day (by first report), counted per severity."""
    counts = _days_split(name="per_day", now=now, days=days, rows=_per_day_rows)
    return [
        {"day": day, **{severity: counts.get((day, severity), 0) for severity in Severity.values}}
        for day in trend_days(now=now, days=days)
    ]


def session_figures(*, now: datetime) -> dict[str, int]:
    """The product's users active now: sessions seen within ACTIVE_WINDOW, and the people
    behind them (a signed-in user once however many tabs; each anonymous session as one). One
    query over the index on last_seen_at."""
    figures = UserSession.objects.filter(last_seen_at__gte=now - ACTIVE_WINDOW).aggregate(
        sessions=Count("*"),
        signed_in=Count("user_id", distinct=True, filter=~Q(user_id="")),
        anonymous=Count("session_id", filter=Q(user_id="")),
    )
    return {"sessions": figures["sessions"], "active_now": figures["signed_in"] + figures["anonymous"]}


def dead_letters_waiting() -> int:
    """Reports the ingest consumer could not store and nobody stored again yet (a small table)."""
    return IngestDeadLetter.objects.filter(stored_at=None).count()


def issue_figures(*, now: datetime) -> dict[str, Any]:
    """The healing panel of the dashboard: five queries, seven when the trends' past days are
    read afresh."""
    return {
        "today": issues_today(now=now),
        "mttr": mttr_trend(now=now),
        "per_day": issues_per_day(now=now),
        "dead_letters": dead_letters_waiting(),
    }
