"""The console's second factor (TOTP, django-otp): enrol an authenticator app, then a code at
every sign-in. Both steps come after the password, for the owner only."""

import logging
from base64 import b32encode
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import logout
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from .audit import console_audit
from .owners import has_confirmed_device, is_owner, otp_verified

logger = logging.getLogger("kaizen.security")

DEVICE_NAME = "Authenticator app"


def qr_svg(data: str) -> str:
    """The QR code as inline SVG, drawn here (no image service sees the secret)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


def totp_now(device: TOTPDevice) -> str:
    """The code the authenticator app shows at this moment (tests and the demo's own checks)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())  # fmt: skip
    return target if safe else reverse("admin:index")


def _context(request, **extra) -> dict:
    return {**admin.site.each_context(request), "next": _next_url(request), **extra}


def _step(name: str, request) -> str:
    return f"{reverse(name)}?{urlencode({'next': _next_url(request)}, safe='/')}"  # as Django's own login redirect


def _gate(request):
    """Where a request that may not be at this step belongs instead, or None."""
    if not is_owner(request.user):
        return redirect(_step("admin:login", request))
    if otp_verified(request=request, user=request.user):
        return redirect(_next_url(request))
    return None


def _token(request) -> str:
    return "".join(request.POST.get("otp_token", "").split())


@sensitive_post_parameters("otp_token")
@csrf_protect
@never_cache
def verify_view(request):
    """A code from an enrolled device, after the password."""
    if (elsewhere := _gate(request)) is not None:
        return elsewhere
    if not has_confirmed_device(request.user):
        return redirect(_step("admin:two_factor_setup", request))
    error = ""
    if request.method == "POST" and _throttled(request.user):
        error = "Too many wrong codes: wait a few seconds, then enter the current code."
    elif request.method == "POST":
        device = _matching_device(request.user, _token(request))
        if device is not None:
            otp_login(request, device)
            console_audit(actor=request.user.get_username(), action="console.two_factor", target=str(device),
                          detail={"device": device.persistent_id})  # fmt: skip
            return redirect(_next_url(request))
        logger.warning("wrong second-factor code", extra={"user": request.user.get_username()})
        error = "That code is not valid. Enter the current code from your authenticator app."
    context = _context(request, title="Two-factor authentication", step="verify", error=error)
    return TemplateResponse(request, "admin/kaizen/two_factor.html", context)


def _throttled(user) -> bool:
    """django-otp makes a device wait 2^n seconds after n wrong codes (OTP_TOTP_THROTTLE_FACTOR)."""
    devices = TOTPDevice.objects.devices_for_user(user, confirmed=True)
    return all(not device.verify_is_allowed()[0] for device in devices)


@require_POST
@csrf_protect
def sign_out_view(request):
    """Sign out between the password and the code (the admin's own logout needs a verified session)."""
    logout(request)
    return redirect(reverse("admin:login"))


def _matching_device(user, token: str) -> TOTPDevice | None:
    if not token.isdigit():
        return None
    with transaction.atomic():
        # select_for_update (for_verify): two requests with one code cannot both succeed.
        for device in TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update():
            if device.verify_token(token):
                return device
    return None


@sensitive_post_parameters("otp_token")
@csrf_protect
@never_cache
def setup_view(request):
    """First sign-in: a new TOTP secret as a QR code; the first valid code confirms the device."""
    if (elsewhere := _gate(request)) is not None:
        return elsewhere
    if has_confirmed_device(request.user):
        return redirect(_step("admin:two_factor", request))
    # The same pending secret on every visit, so reloading the page does not change the QR code.
    device, _ = TOTPDevice.objects.get_or_create(user=request.user, confirmed=False, defaults={"name": DEVICE_NAME})
    error = ""
    if request.method == "POST":
        if _token(request).isdigit() and device.verify_token(_token(request)):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            console_audit(actor=request.user.get_username(), action="console.two_factor_enrol", target=str(device),
                          detail={"device": device.persistent_id})  # fmt: skip
            return redirect(_next_url(request))
        error = "That code is not valid. Scan the QR code again and enter the code your app shows now."
    context = _context(request, title="Set up two-factor authentication", step="setup", error=error,
                       qr_svg=qr_svg(device.config_url), secret=_base32(device.bin_key),
                       issuer=settings.OTP_TOTP_ISSUER)  # fmt: skip
    return TemplateResponse(request, "admin/kaizen/two_factor.html", context)


def _base32(key: bytes) -> str:
    """The secret for typing in by hand, in groups of four as authenticator apps show it."""
    text = b32encode(key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))
