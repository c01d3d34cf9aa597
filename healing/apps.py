import logging

from django.apps import AppConfig

logger = logging.getLogger("kaizen.runtime")


class HealingConfig(AppConfig):
    name = "healing"
    verbose_name = "Healing"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry this method runs after.
        from django.conf import settings

        from healing.audit import console_action_record
        from healing.console.dashboard import issue_figures, session_figures
        from healing.ingest import cors  # noqa: F401 - connects the per-project CORS signal
        from healing.loop import rollouts
        from healing.metrics import HealingCollector
        from kaizen_site import checks, dashboard, ops  # noqa: F401 - checks registers the configuration checks
        from kaizen_site.security.audit import console_action

        rollouts.receivers_connect()
        console_action.connect(console_action_record, dispatch_uid="kaizen_console_audit")
        ops.scrape_time_register(HealingCollector())
        dashboard.dashboard_register("issues", issue_figures)
        dashboard.dashboard_register("sessions", session_figures)
        logger.info("runtime chosen: %s", settings.RUNTIME.describe())
