"""The owner APIs' default permission (REST_FRAMEWORK's DEFAULT_PERMISSION_CLASSES)."""

from django.contrib.auth import get_user
from rest_framework.permissions import BasePermission

from .owners import console_owner


class IsConsoleOwner(BasePermission):
    """The owner's console session: an address in KAIZEN_OWNER_EMAILS, past the second factor,
    from an address the allowlist admits. Staff without all three get a 403."""

    message = "Only the owner's console session, signed in with its second factor, may use this API."

    def has_permission(self, request, view) -> bool:
        user = request.user if request.user is not None else get_user(request._request)
        return console_owner(request=request._request, user=user)
