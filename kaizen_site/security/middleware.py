"""ConsoleGuardMiddleware: the allowlist at the console's door, the recorded session behind it,
and the client address for the audit log. After AuthenticationMiddleware and OTPMiddleware."""

import logging

from django.conf import settings
from django.http import HttpResponseForbidden

from .audit import serving
from .network import client_ip, ip_allowed
from .sessions import admin_session_current, admin_session_end

logger = logging.getLogger("kaizen.security")

CONSOLE_PREFIX = "/admin/"


class ConsoleGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        ip = client_ip(request)
        if request.path.startswith(CONSOLE_PREFIX) and not ip_allowed(ip=ip, cidrs=settings.KAIZEN_ADMIN_IP_ALLOWLIST):
            logger.warning("console refused to an address outside the allowlist", extra={"ip": ip})
            return HttpResponseForbidden("The console is not reachable from this address.")
        # Only a browser that signed in has a session user; ingest and metrics requests skip this.
        if request.user.is_authenticated and admin_session_current(request) is None:
            admin_session_end(request, reason="revoked, expired or unrecorded")
        with serving(ip):
            return self.get_response(request)
