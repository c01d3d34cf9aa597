"""The console on the owner's phone: the web-app manifest, the service worker Pusher Beams
delivers web push through, and Beams' own service-worker code served from the npm package.

All three sit under /admin/ so the service worker's scope is the console. They are not behind
the sign-in: a browser fetches the manifest without cookies, and none of them holds a secret.
"""

from django.http import Http404, HttpResponse, JsonResponse
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from .channels.push_browser import BEAMS_MODULES, beams_installed, beams_source


@require_GET
@cache_control(max_age=3600)
def manifest(request):
    """https://developer.mozilla.org/en-US/docs/Web/Manifest — "Add to Home Screen" opens the console."""
    body = {
        "name": "Kaizen — Manager's Console",
        "short_name": "Kaizen",
        "start_url": "/admin/",
        "scope": "/admin/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#264b5d",
        "icons": [{"src": static("kaizen/icon.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "any"}],
    }
    return JsonResponse(body, content_type="application/manifest+json")


@require_GET
@cache_control(no_cache=True)  # browsers check for a new worker on every visit
def service_worker(request):
    """Registered as a module worker (`type: "module"`) with scope /admin/. Without the npm package
    it still installs, and push stays off (the phone page says so)."""
    lines = ["// Kaizen console service worker: Pusher Beams web push for the owner's phone."]
    if beams_installed():
        lines.append('import "./push/beams/service-worker.js";')
    else:
        lines.append("// Beams' web SDK is not installed (npm ci): no push handler.")
    lines.append("self.addEventListener('install', () => self.skipWaiting());")
    lines.append("self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));")
    return HttpResponse("\n".join(lines) + "\n", content_type="text/javascript")


@require_GET
@cache_control(max_age=3600)
def beams_module(request, name: str):
    """One of Beams' service-worker modules, straight from node_modules (nothing else is served)."""
    name = name.removesuffix(".js")
    if name not in BEAMS_MODULES or not beams_source(name).is_file():
        raise Http404("No such module.")
    return HttpResponse(beams_source(name).read_bytes(), content_type="text/javascript")
