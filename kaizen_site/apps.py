from django.apps import AppConfig


class KaizenSiteConfig(AppConfig):
    """The project package as an app: it owns what every app shares, such as the LLM call log."""

    name = "kaizen_site"
    label = "kaizen_site"
    verbose_name = "Kaizen"
