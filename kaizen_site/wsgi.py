"""The WSGI application the web server runs (the Procfile's `web`).

The busiest requests, problem reports and the flag reads products make on every page, go to a
Django handler that loads only the middleware they use: the security headers and CORS (browsers
call both cross-origin), and for flags the Content-Length. Neither reads a session or a cookie:
they authenticate with the project's key. Sessions, CSRF, authentication, 2FA, the console
guard, messages and django-axes serve the console; they cost about a fifth of a report's CPU
(bench/ingest.py) and a quarter of a flag read's. Every other path, the flag owner's API
included, gets the whole of settings.MIDDLEWARE.

The garbage collector is tuned for a long-lived server process (see collector_tuned).
"""

import gc
import os
import re

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")

# The native report endpoint and the Sentry protocol's (kaizen_site/urls.py).
REPORT_PATHS = re.compile(r"/api/v1/issues|/api/\d+/(envelope|store)/")
REPORT_MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "corsheaders.middleware.CorsMiddleware"]
# The flag reads. CommonMiddleware adds the Content-Length these answers have always carried
# (without it the server sends the body chunked) and the ALLOWED_HOSTS check; a report's answer
# does without both (5 % of its CPU).
FLAG_READ_PATHS = re.compile(r"/api/v1/flags(/evaluate)?")
FLAG_READ_MIDDLEWARE = [*REPORT_MIDDLEWARE, "django.middleware.common.CommonMiddleware"]


def handler_with(middleware: list[str]) -> WSGIHandler:
    """A Django handler running `middleware` instead of settings.MIDDLEWARE, which Django reads
    once, when the handler is built."""
    whole = settings.MIDDLEWARE
    settings.MIDDLEWARE = middleware
    try:
        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = whole


def lean_routed(*, everything, lean: list[tuple[re.Pattern, WSGIHandler]]):
    """The handler of the first pattern in `lean` the path matches, else `everything`."""

    def route(environ, start_response):
        path = environ.get("PATH_INFO", "")
        for paths, handler in lean:
            if paths.fullmatch(path):
                return handler(environ, start_response)
        return everything(environ, start_response)

    return route


# A first generation of 10,000 objects instead of 700: a report allocates a few hundred, and at
# the default the collector ran every couple of requests.
GC_GEN0_THRESHOLD = 10_000


def collector_tuned() -> None:
    """Freeze what start-up loaded (modules, settings, URL patterns: it lives as long as the
    process, and the collector would scan it on every full collection) and collect the young
    generation less often. Under bench/ingest.py's load this took the web server from 0.40 to
    0.35 CPU ms per report and removed a half-second p99 tail from some runs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


application = lean_routed(
    everything=get_wsgi_application(),
    lean=[(REPORT_PATHS, handler_with(REPORT_MIDDLEWARE)), (FLAG_READ_PATHS, handler_with(FLAG_READ_MIDDLEWARE))],
)
collector_tuned()
