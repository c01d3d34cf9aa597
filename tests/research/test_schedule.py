"""The daily run at 06:00 in the owner's timezone, kept at 06:00 local across DST changes."""

import importlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from research.schedule import DAILY_NAME, DAILY_TASK, owner_today

pytestmark = pytest.mark.django_db
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def paris_task(settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/Paris"
    PeriodicTask.objects.filter(task=DAILY_TASK).delete()
    importlib.import_module("research.migrations.0001_initial").seed(apps, None)
    return PeriodicTask.objects.get(task=DAILY_TASK)


def next_run(task: PeriodicTask, last: datetime) -> datetime:
    start, delta, _ = task.crontab.schedule.remaining_delta(last)
    return (start + delta).astimezone(UTC)


def test_the_migration_creates_one_editable_task_on_the_research_queue(paris_task):
    assert paris_task.name == DAILY_NAME and paris_task.queue == "research" and paris_task.enabled
    crontab = paris_task.crontab
    assert (crontab.minute, crontab.hour, str(crontab.timezone)) == ("0", "6", "Europe/Paris")
    importlib.import_module("research.migrations.0001_initial").seed(apps, None)  # idempotent
    assert PeriodicTask.objects.filter(task=DAILY_TASK).count() == 1
    assert CrontabSchedule.objects.filter(hour="6", timezone="Europe/Paris").count() == 1


def test_six_local_across_the_spring_change(paris_task):
    last = datetime(2027, 3, 27, 6, 0, tzinfo=PARIS)  # CET, UTC+1
    assert last.astimezone(UTC).hour == 5
    following = next_run(paris_task, last)
    assert following == datetime(2027, 3, 28, 4, 0, tzinfo=UTC)  # CEST, UTC+2: still 06:00 in Paris
    assert following.astimezone(PARIS).hour == 6


def test_six_local_across_the_autumn_change(paris_task):
    following = next_run(paris_task, datetime(2027, 10, 30, 6, 0, tzinfo=PARIS))
    assert following == datetime(2027, 10, 31, 5, 0, tzinfo=UTC)
    assert following.astimezone(PARIS).hour == 6


def test_owner_today_is_the_owners_date(settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Pacific/Auckland"
    late_utc = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)  # already the 30th in Auckland
    assert str(owner_today(now=late_utc)) == "2026-11-30"


def test_checks_say_which_research_capabilities_are_off(settings):
    from research.checks import research_settings

    settings.REDDIT_CLIENT_ID, settings.ANTHROPIC_API_KEY = "", ""
    assert {p.id for p in research_settings(None)} == {"research.I001", "research.I002"}
    settings.REDDIT_CLIENT_ID, settings.REDDIT_CLIENT_SECRET, settings.ANTHROPIC_API_KEY = "id", "secret", "key"
    assert research_settings(None) == []
