"""Who may change a project's flags over the API: its owner.

The owner proves it with the project's secret key (`Authorization: Bearer <secret>`) next to the
public key that names the project, or with a staff session in the console. The public key
alone — it ships in every browser — may only read.
"""

import hmac

from django.contrib.auth import get_user
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from healing.models import ProjectKey, hash_secret

_NO_HASH = "0" * 64  # compared against when the key has no stored hash, so timing says nothing


def _bearer(request) -> str | None:
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def owner_secret_valid(*, public_key: str, secret: str) -> bool:
    stored = (
        ProjectKey.objects.filter(public_key=public_key, is_active=True).values_list("secret_hash", flat=True).first()
    )
    return hmac.compare_digest(hash_secret(secret), stored or _NO_HASH) and stored is not None


def request_owner(request) -> str | None:
    """The actor name of the project's owner making `request` (DRF, already key-authenticated),
    or None. A staff session must pass Django's CSRF check: it is a browser."""
    secret = _bearer(request)
    if secret is not None:
        public_key = request.META.get("HTTP_X_KAIZEN_KEY") or request.query_params.get("key", "")
        if secret and owner_secret_valid(public_key=public_key, secret=secret):
            return f"owner:{public_key[:8]}"
        return None
    # The session's user, read afresh: DRF replaced request.user with the key authentication's.
    user = get_user(request._request)
    if user.is_authenticated and user.is_active and user.is_staff:
        SessionAuthentication().enforce_csrf(request)
        return user.get_username()
    return None


class IsProjectOwner(BasePermission):
    message = "Only the project's owner may do this: send the secret key as `Authorization: Bearer <secret>`."

    def has_permission(self, request, view) -> bool:
        actor = request_owner(request)
        request.kaizen_actor = actor
        return actor is not None
