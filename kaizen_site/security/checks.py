"""System checks of the console's door (`manage.py check`, at every start)."""

from django.conf import settings
from django.core.checks import Error, Info, Tags, register

from .network import parse_networks


@register(Tags.security)
def console_access(app_configs, **kwargs):
    # An empty KAIZEN_OWNER_EMAILS (nobody can sign in) is kaizen.W001, in kaizen_site.checks.
    problems = []
    for name in ("KAIZEN_ADMIN_IP_ALLOWLIST", "KAIZEN_METRICS_IP_ALLOWLIST"):
        try:
            parse_networks(tuple(getattr(settings, name)))
        except ValueError as exc:
            problems.append(Error(f"{name}: {exc}; nobody is admitted until it is fixed.", id="kaizen.E201"))
    return problems


@register(Tags.security)
def metrics_access(app_configs, **kwargs):
    if settings.KAIZEN_METRICS_TOKEN or settings.KAIZEN_METRICS_IP_ALLOWLIST:
        return []
    if settings.DEBUG:
        return [Info("/metrics is open to anyone: DEBUG is on and neither KAIZEN_METRICS_TOKEN nor "
                     "KAIZEN_METRICS_IP_ALLOWLIST is set.", id="kaizen.I201")]  # fmt: skip
    return [
        Info(
            "/metrics is closed: set KAIZEN_METRICS_TOKEN (Prometheus' `authorization` scrape setting) "
            "or KAIZEN_METRICS_IP_ALLOWLIST to let a scraper in.",
            id="kaizen.I202",
        )
    ]
