from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"
    verbose_name = "Enhancements"

    def ready(self) -> None:
        from kaizen_site.dashboard import dashboard_register

        from . import checks, signals  # noqa: F401  (registers the checks, connects the Change receiver)
        from .dashboard import proposal_figures

        dashboard_register("proposals", proposal_figures)
