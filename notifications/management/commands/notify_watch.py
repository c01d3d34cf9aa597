"""Watch the broker from outside Celery and page the owner when it is down (a task cannot do that:
it needs the broker to run). Run it beside beat: `python manage.py notify_watch`."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from notifications.system_checks import broker_down_alert


class Command(BaseCommand):
    help = "Alert the owner when the Celery broker cannot be reached."

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=60.0, help="seconds between checks")
        parser.add_argument("--once", action="store_true", help="check once and exit")

    def handle(self, *args, every: float, once: bool, **options):
        while True:
            alert = broker_down_alert(url=settings.CELERY_BROKER_URL)
            if alert is not None:
                self.stderr.write(f"broker down: owner alerted (notification {alert.pk})")
            if once:
                return
            time.sleep(every)
