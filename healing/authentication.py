"""Authenticating ingest requests by a project's public key."""

import logging

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied

from healing.projects import ProjectAuth, project_for_key

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
    if origin and origin.rstrip("/") not in project.allowed_origins:
        raise PermissionDenied(f"Origin {origin} is not allowed for this project.", code="origin_not_allowed")
    return project


class ProjectKeyAuthentication(BaseAuthentication):
    """`X-Kaizen-Key: <public key>` header, or `?key=` (browsers, to avoid a CORS preflight)."""

    def authenticate(self, request):
        key = request.META.get("HTTP_X_KAIZEN_KEY") or request.query_params.get("key", "")
        return (None, project_authenticate(key=key, origin=request.META.get("HTTP_ORIGIN")))

    def authenticate_header(self, request) -> str:
        return 'Kaizen-Key realm="ingest"'  # makes DRF answer 401, not 403, to a missing key


class ProjectKeyScheme(OpenApiAuthenticationExtension):
    """Documents ProjectKeyAuthentication in the OpenAPI schema."""

    target_class = ProjectKeyAuthentication
    name = "ProjectKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Kaizen-Key",
            "description": "The project's public key (browsers may send it as `?key=` instead).",
        }
