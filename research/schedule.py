"""The owner's day: research runs at 06:00 in KAIZEN_OWNER_TIMEZONE, and "today" is their date."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

DAILY_TASK = "research.tasks.daily_run"
DAILY_NAME = "research: daily run (sources, competitors, feedback, proposals, alert)"  # as the migration names it


def owner_zone() -> ZoneInfo:
    return ZoneInfo(settings.KAIZEN_OWNER_TIMEZONE)


def owner_today(*, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(owner_zone()).date()
