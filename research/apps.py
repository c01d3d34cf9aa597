from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "research"
    verbose_name = "Enhancements"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the Change completion receiver)
