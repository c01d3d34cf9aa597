"""The healing figures of the console's dashboard, against issues built for the purpose."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from healing.console.dashboard import issue_figures, issues_per_day, issues_today, mttr_trend, session_figures
from healing.models import UserSession
from tests.factories import IssueFactory, ProjectFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
TODAY = datetime(2026, 11, 30, tzinfo=UTC)


def issue(*, first_seen, stage="detected", resolved_after=None, severity="P2", last_seen=None, **fields):
    return IssueFactory(
        project=fields.pop("project", None) or ProjectFactory(),
        first_seen=first_seen,
        last_seen=last_seen or first_seen,
        stage=stage,
        stage_entered_at=first_seen + (resolved_after or timedelta(0)),
        resolved_at=first_seen + resolved_after if resolved_after else None,
        severity=severity,
        **fields,
    )


def test_today_counts_issues_by_where_they_stand_and_every_one_waiting_for_a_person():
    issue(first_seen=TODAY + timedelta(hours=1), stage="resolved", resolved_after=timedelta(minutes=5))
    issue(first_seen=TODAY + timedelta(hours=2), stage="mitigated")
    issue(first_seen=TODAY + timedelta(hours=3), stage="diagnosing")
    issue(first_seen=TODAY + timedelta(hours=4), stage="escalated")
    # Seen again today though first reported a week ago: active today, not new.
    issue(first_seen=TODAY - timedelta(days=7), last_seen=TODAY + timedelta(hours=5), stage="detected")
    # Escalated last week, untouched since: not today's, but still waiting for the owner.
    issue(first_seen=TODAY - timedelta(days=7), stage="aborted")
    # Yesterday's, done: nowhere today.
    issue(first_seen=TODAY - timedelta(hours=3), stage="resolved", resolved_after=timedelta(hours=1))

    assert issues_today(now=NOW) == {"new": 4, "fixed": 2, "pending": 2, "escalated": 1, "needs_person": 2}


def test_mttr_is_the_mean_time_from_first_report_to_resolution_per_day_with_gaps_for_none():
    issue(first_seen=TODAY + timedelta(hours=1), stage="resolved", resolved_after=timedelta(minutes=10))
    issue(first_seen=TODAY + timedelta(hours=2), stage="resolved", resolved_after=timedelta(minutes=30))
    issue(first_seen=TODAY - timedelta(days=3), stage="resolved", resolved_after=timedelta(hours=1))
    issue(first_seen=TODAY - timedelta(days=20), stage="resolved", resolved_after=timedelta(hours=1))  # too old
    issue(first_seen=TODAY, stage="escalated")  # not resolved

    trend = mttr_trend(now=NOW)

    assert len(trend) == 14
    assert trend[-1] == {"day": TODAY.date(), "resolved": 2, "seconds": 20 * 60}
    assert trend[-4] == {"day": (TODAY - timedelta(days=3)).date(), "resolved": 1, "seconds": 3600}
    assert [row["seconds"] for row in trend[:-4]] == [None] * 10
    assert trend[-2]["seconds"] is None and trend[-2]["resolved"] == 0


def test_issues_per_day_are_counted_by_day_of_first_report_and_severity():
    for severity in ("P0", "P2", "P2"):
        issue(first_seen=TODAY + timedelta(hours=1), severity=severity)
    issue(first_seen=TODAY - timedelta(days=13, hours=-1), severity="P3")  # the first day shown
    issue(first_seen=TODAY - timedelta(days=14), severity="P3")  # one day before it

    days = issues_per_day(now=NOW)

    assert days[-1] == {"day": TODAY.date(), "P0": 1, "P1": 0, "P2": 2, "P3": 0}
    assert days[0] == {"day": (TODAY - timedelta(days=13)).date(), "P0": 0, "P1": 0, "P2": 0, "P3": 1}
    assert sum(row["P3"] for row in days) == 1


def test_days_are_the_owners(settings):
    settings.KAIZEN_OWNER_TIMEZONE = "America/New_York"  # 03:00 UTC on the 30th is the 29th there
    issue(first_seen=datetime(2026, 11, 30, 3, 0, tzinfo=UTC), severity="P1")

    days = issues_per_day(now=NOW)

    assert days[-1]["day"].isoformat() == "2026-11-30" and days[-1]["P1"] == 0
    assert days[-2]["day"].isoformat() == "2026-11-29" and days[-2]["P1"] == 1


def _queries_for(count: int) -> tuple[int, int]:
    """Queries of the healing figures with the trends' past days read afresh, then from the cache."""
    project = ProjectFactory()
    for n in range(count):
        issue(
            project=project,
            first_seen=NOW - timedelta(hours=n * 3),
            stage=("resolved", "escalated", "detected")[n % 3],
            resolved_after=timedelta(minutes=n + 1) if n % 3 == 0 else None,
            severity=("P0", "P1", "P2", "P3")[n % 4],
        )
    cache.clear()
    with CaptureQueriesContext(connection) as cold:
        figures = issue_figures(now=NOW)
    with CaptureQueriesContext(connection) as warm:
        assert issue_figures(now=NOW) == figures
    assert sum(row["resolved"] for row in figures["mttr"]) > 0
    return len(cold), len(warm)


def test_the_number_of_queries_does_not_grow_with_the_issues():
    few = _queries_for(10)
    many = _queries_for(90)  # 100 in all
    assert few == many == (7, 5)


def test_past_days_come_from_the_cache_and_today_from_the_database():
    issues_per_day(now=NOW)
    issue(first_seen=TODAY + timedelta(hours=2), severity="P0")
    issue(first_seen=TODAY - timedelta(days=3), severity="P0")

    days = issues_per_day(now=NOW)
    assert days[-1]["P0"] == 1  # today's: at once
    assert days[-4]["P0"] == 0  # an earlier day's: once the cached part expires

    cache.clear()
    assert issues_per_day(now=NOW)[-4]["P0"] == 1


def test_users_active_now_are_the_people_behind_sessions_seen_in_the_last_five_minutes():
    project = ProjectFactory()

    def session(name: str, *, user: str = "", minutes_ago: float):
        UserSession.objects.create(project=project, session_id=name, user_id=user,
                                   last_seen_at=NOW - timedelta(minutes=minutes_ago))  # fmt: skip

    session("a1", user="ann", minutes_ago=1)
    session("a2", user="ann", minutes_ago=4)  # Ann's second tab: one person
    session("b1", user="bob", minutes_ago=2)
    session("x1", minutes_ago=3)  # anonymous: one person per session
    session("x2", minutes_ago=0)
    session("c1", user="cid", minutes_ago=6)  # gone quiet

    assert session_figures(now=NOW) == {"sessions": 5, "active_now": 4}
