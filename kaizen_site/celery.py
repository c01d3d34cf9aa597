"""The Celery app. Its configuration is the CELERY_* block in kaizen_site.settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")

app = Celery("kaizen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
