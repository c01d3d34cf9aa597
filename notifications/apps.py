from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from kaizen_site.dashboard import dashboard_register

        from . import checks  # noqa: F401 - registers the system check
        from .dashboard import product_figures

        dashboard_register("product", product_figures)
