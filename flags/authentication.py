"""Who may change a project's flags over the API: its owner, or a console user allowed to.

The owner proves it with the project's secret key (`Authorization: Bearer <secret>`) next to the
public key that names the project. A console session must be the owner's (an address in
KAIZEN_OWNER_EMAILS, past the second factor, from an allowed address: kaizen_site.security) and
is held to the same model permissions the console checks (`flags.change_flag` to edit or kill a
flag). The public key alone — it ships in every browser — may only read.
"""

import hmac
import logging
from collections.abc import Mapping, Sequence

from django.contrib.auth import get_user
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from healing.models import ProjectKey, hash_secret
from kaizen_site.security.owners import console_owner

logger = logging.getLogger("kaizen.api")

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


def request_owner(request, *, permissions: Sequence[str]) -> str | None:
    """The actor name of whoever may make `request` (DRF, already key-authenticated), or None.

    The project's secret key is its owner and may do anything to the project. A console session
    must be the owner's (kaizen_site.security.owners.console_owner), hold every one of
    `permissions` (Django's `app_label.codename`) and pass Django's CSRF check: it is a browser.
    Raises PermissionDenied naming what a console user lacks."""
    secret = _bearer(request)
    if secret is not None:
        public_key = request.META.get("HTTP_X_KAIZEN_KEY") or request.query_params.get("key", "")
        if secret and owner_secret_valid(public_key=public_key, secret=secret):
            return f"owner:{public_key[:8]}"
        return None
    # The session's user, read afresh: DRF replaced request.user with the key authentication's.
    user = get_user(request._request)
    if not console_owner(request=request._request, user=user):
        return None
    SessionAuthentication().enforce_csrf(request)
    missing = sorted(perm for perm in permissions if not user.has_perm(perm))
    if missing:
        logger.warning(
            "console user lacks a permission for an owner API",
            extra={"user": user.get_username(), "missing": missing, "path": request.path, "method": request.method},
        )
        raise PermissionDenied(f"Your console account lacks the permission {', '.join(missing)} this change needs.")
    return user.get_username()


class IsProjectOwner(BasePermission):
    """The owner API's gate. The view names the model permissions each method needs, as
    DjangoModelPermissions would (`owner_permissions = {"PATCH": ["flags.change_flag"]}`); a
    method it does not name is refused to everyone, so a new write can't slip in unguarded."""

    message = "Only the project's owner may do this: send the secret key as `Authorization: Bearer <secret>`."

    def has_permission(self, request, view) -> bool:
        required: Mapping[str, Sequence[str]] = getattr(view, "owner_permissions", {})
        if request.method not in required:
            return False
        actor = request_owner(request, permissions=required[request.method])
        request.kaizen_actor = actor
        return actor is not None
