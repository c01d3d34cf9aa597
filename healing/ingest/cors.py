"""CORS per project: a browser origin may report only to projects that list it.

django-cors-headers asks this hook for every /api/ request. A report carries its key in the
query (the browser form); a preflight for the header form carries none, so it is allowed when
any active project lists the origin, and the request itself is then checked against its key
(healing.authentication refuses an origin its project does not allow).
"""

import re

from corsheaders.signals import check_request_enabled
from django.conf import settings

from healing.models import Project
from healing.projects import project_for_key
from kaizen_site.process_cache import ProcessCache

_ORIGINS_TTL = 10.0
_any_project: ProcessCache[frozenset[str]] = ProcessCache(ttl=_ORIGINS_TTL)


def _origins_load() -> frozenset[str]:
    origins = set()
    for allowed in Project.objects.filter(is_active=True).values_list("allowed_origins", flat=True):
        origins.update(o.rstrip("/") for o in allowed or [])
    return frozenset(origins)


def _all_allowed_origins() -> frozenset[str]:
    return _any_project.get("origins", _origins_load)


def origin_allowed(request) -> bool:
    origin = (request.headers.get("Origin") or "").rstrip("/")
    if not origin:
        return False
    key = request.GET.get("key") or request.GET.get("sentry_key")
    if key:
        project = project_for_key(key)
        return project is not None and origin in project.allowed_origins
    return origin in _all_allowed_origins()


def _cors_hook(sender, request, **kwargs) -> bool:
    # django-cors-headers asks this hook for every path CORS_URLS_REGEX leaves out too: the event
    # stream answers CORS itself (healing.stream.sse), on an event loop where this read must not run.
    if not re.match(settings.CORS_URLS_REGEX, request.path_info):
        return False
    return origin_allowed(request)


check_request_enabled.connect(_cors_hook, dispatch_uid="kaizen-project-cors")
