"""Authenticating ingest requests by a project's public key, and the per-project rate limit."""

import logging

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.throttling import BaseThrottle

from .ingest import rate_limit_take
from .projects import ProjectAuth, project_for_key

logger = logging.getLogger("kaizen.ingest")


def project_authenticate(*, key: str, origin: str | None) -> ProjectAuth:
    """Unknown key → 401; revoked key, disabled project or a browser origin the project does not
    allow → 403. Server-side callers send no Origin and are not origin-checked."""
    if not key or len(key) > 64:
        raise AuthenticationFailed("Missing or malformed project key.", code="missing_key")
    project = project_for_key(key)
    if project is None:
        raise AuthenticationFailed("Unknown project key.", code="unknown_key")
    if not project.key_active:
        raise PermissionDenied("This project key was revoked.", code="revoked_key")
    if not project.project_active:
        raise PermissionDenied("This project is disabled.", code="project_disabled")
    if origin and origin != "null" and origin.rstrip("/") not in project.allowed_origins:
        raise PermissionDenied(f"Origin {origin} is not allowed for this project.", code="origin_not_allowed")
    return project


class ProjectKeyAuthentication(BaseAuthentication):
    """`X-Kaizen-Key: <public key>` header, or `?key=` (browsers, to avoid a CORS preflight)."""

    def authenticate(self, request):
        key = request.META.get("HTTP_X_KAIZEN_KEY") or request.query_params.get("key", "")
        return (None, project_authenticate(key=key, origin=request.META.get("HTTP_ORIGIN")))

    def authenticate_header(self, request) -> str:
        return 'Kaizen-Key realm="ingest"'  # makes DRF answer 401, not 403, to a missing key


class ProjectRateThrottle(BaseThrottle):
    """The project's reports-per-minute quota; a report over it is answered 429 + Retry-After."""

    def allow_request(self, request, view) -> bool:
        decision = rate_limit_take(project=request.auth, count=getattr(view, "rate_cost", 1))
        self.retry_after = decision.retry_after
        return decision.allowed

    def wait(self) -> float:
        return self.retry_after
