import logging

from django.apps import AppConfig

logger = logging.getLogger("kaizen.runtime")


class HealingConfig(AppConfig):
    name = "healing"
    verbose_name = "Healing"

    def ready(self) -> None:
        from django.conf import settings

        from healing.ingest import cors  # noqa: F401 - connects the per-project CORS signal
        from kaizen_site import checks  # noqa: F401 - registers the configuration checks

        logger.info("runtime chosen: %s", settings.RUNTIME.describe())
