"""Who is the owner: an active staff account whose email is in KAIZEN_OWNER_EMAILS.

Being staff or superuser opens nothing by itself: the owner's addresses are the one list that says
who runs this service (the same list owner email alerts go to).
"""

from django.conf import settings
from django_otp import DEVICE_ID_SESSION_KEY, user_has_device
from django_otp.models import Device

from .network import console_ip_allowed


def owner_addresses() -> set[str]:
    return {address.strip().lower() for address in settings.KAIZEN_OWNER_EMAILS if address.strip()}


def is_owner(user) -> bool:
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return False
    email = (user.email or "").strip().lower()
    return bool(email) and email in owner_addresses()


def otp_verified(*, request, user) -> bool:
    """The session passed the second factor with a confirmed device of this user. Read from the
    session rather than `request.user.is_verified()`: DRF replaces request.user with what its own
    authentication found, and OTPMiddleware's flag goes with it."""
    persistent_id = request.session.get(DEVICE_ID_SESSION_KEY)
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id, for_verify=False)
    return device is not None and device.confirmed and device.user_id == user.pk


def has_confirmed_device(user) -> bool:
    return user_has_device(user, confirmed=True)


def console_owner(*, request, user) -> bool:
    """Everything the console and the owner APIs ask of a browser session: the owner, past 2FA,
    from an allowed address. Kept on the request: the admin asks several times per page."""
    key = getattr(user, "pk", None)
    cached = getattr(request, "_kaizen_console_owner", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    allowed = is_owner(user) and otp_verified(request=request, user=user) and console_ip_allowed(request)
    request._kaizen_console_owner = (key, allowed)
    return allowed
