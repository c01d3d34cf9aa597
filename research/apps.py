from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"
    verbose_name = "Enhancements"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (registers the checks, connects the Change receiver)
