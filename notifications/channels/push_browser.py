"""Beams' browser side, as npm installs it (@pusher/push-notifications-web in package.json): the
web SDK the console page loads from static files, and the service-worker modules the console's
worker imports (kaizen_site serves them under /admin/push/beams/, see notifications.views)."""

from pathlib import Path

from django.conf import settings

BEAMS_PACKAGE = "@pusher/push-notifications-web"
# Beams' service worker ships in the npm package as ES module sources only (its built file is on
# Pusher's CDN, which the console never loads). These are the modules it imports, by the
# extension-less names it imports them with.
BEAMS_MODULES = ("service-worker", "do-request", "device-state-store")


def beams_source(name: str) -> Path:
    return settings.NODE_MODULES / BEAMS_PACKAGE / "src" / f"{name}.js"


def beams_installed() -> bool:
    return all(beams_source(name).is_file() for name in BEAMS_MODULES)
