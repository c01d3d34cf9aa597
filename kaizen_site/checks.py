"""Start-up checks of the configuration (`manage.py check`, and every runserver/migrate)."""

import zoneinfo
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.http.request import validate_host


@register(Tags.compatibility)
def owner_settings(app_configs, **kwargs):
    problems = []
    try:
        zoneinfo.ZoneInfo(settings.KAIZEN_OWNER_TIMEZONE)
    # A folder of the zone database ("Europe") or an over-long name raises OSError, not "not found".
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(
            Error(
                f"KAIZEN_OWNER_TIMEZONE={settings.KAIZEN_OWNER_TIMEZONE!r} is not an IANA timezone name.",
                hint='Use a name such as "Europe/Paris" or "America/New_York".',
                id="kaizen.E001",
            )
        )
    if not settings.KAIZEN_OWNER_EMAILS:
        problems.append(
            Warning(
                "KAIZEN_OWNER_EMAILS is empty: nobody can sign in to the console, and owner email alerts are off.",
                hint="Set a comma-separated list of addresses; the owner's console account needs one as its email.",
                id="kaizen.W001",
            )
        )
    if not settings.KAIZEN_PATCH_EXECUTOR_URL:
        problems.append(
            Info(
                "Patch executor off: KAIZEN_PATCH_EXECUTOR_URL is not set, code patches wait for the owner's approval.",
                id="kaizen.I001",
            )
        )
    elif not settings.KAIZEN_PATCH_EXECUTOR_SECRET:
        problems.append(
            Error(
                "KAIZEN_PATCH_EXECUTOR_URL is set without KAIZEN_PATCH_EXECUTOR_SECRET: patches would go unsigned.",
                hint="Set the shared secret the executor verifies the X-Kaizen-Signature header with.",
                id="kaizen.E002",
            )
        )
    if not settings.ANTHROPIC_API_KEY:
        problems.append(
            Info(
                "LLM diagnosis off: ANTHROPIC_API_KEY not set",
                hint="Issues are matched against the pattern library only, then escalated to the owner.",
                id="kaizen.I002",
            )
        )
    return problems


@register(Tags.compatibility)
def public_url_served(app_configs, **kwargs):
    """The address everyone is told must be one Django answers: a host missing from ALLOWED_HOSTS
    gets a 400 for every page, report and verification replay sent there."""
    host = urlsplit(settings.KAIZEN_PUBLIC_URL).hostname or ""
    if validate_host(host, settings.ALLOWED_HOSTS):
        return []
    return [
        Warning(
            f"KAIZEN_PUBLIC_URL={settings.KAIZEN_PUBLIC_URL} names the host {host!r}, which ALLOWED_HOSTS lacks.",
            hint=f"Add {host} to ALLOWED_HOSTS, or set KAIZEN_PUBLIC_URL to the address this service is reached at.",
            id="kaizen.W002",
        )
    ]
