"""Verification probes: a signed header that forces one flag on for one user, in the sandbox only.

    X-Kaizen-Probe: <flag key>:<user id>:<unix ts>:<hex HMAC-SHA256 of "<flag key>:<user id>:<unix ts>">

keyed with KAIZEN_SANDBOX_SECRET. Verification replays the affected user's failing action with
the fix's flag forced on before any real user gets it; production never honours the header.
"""

import hashlib
import hmac
import logging
import time

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException

logger = logging.getLogger("kaizen.flags")

HEADER = "HTTP_X_KAIZEN_PROBE"
MAX_AGE_SECONDS = 300  # a captured header is useless after five minutes
MAX_HEADER_LENGTH = 600

_clock = time.time  # the tests move it


class ProbeRefused(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    error_code = "probe_refused"
    default_detail = "The probe header is invalid or expired."


def probe_sign(*, flag_key: str, user_id: str, timestamp: int | None = None, key: str | None = None) -> str:
    """The header value verification sends (also what the tests forge against)."""
    ts = int(_clock() if timestamp is None else timestamp)
    message = f"{flag_key}:{user_id}:{ts}"
    signing_key = (settings.KAIZEN_SANDBOX_SECRET if key is None else key).encode()
    return f"{message}:{hmac.new(signing_key, message.encode(), hashlib.sha256).hexdigest()}"


def probe_forced_flags(request) -> dict[str, str]:
    """{flag key: user id} a valid probe header forces on; {} without one.

    Outside the sandbox the header is ignored (logged): a production request must behave
    exactly as if it were absent. In the sandbox a malformed, forged or stale header raises
    ProbeRefused (403), so verification never mistakes a refused probe for a failed fix.
    `request` is a Django or DRF request.
    """
    raw = request.META.get(HEADER)
    if not raw:
        return {}
    if not settings.KAIZEN_SANDBOX_MODE:
        logger.warning("probe header ignored outside the sandbox", extra={"path": request.path})
        return {}
    secret = settings.KAIZEN_SANDBOX_SECRET
    if not secret:  # an HMAC under an empty key is forgeable by anyone
        raise ProbeRefused("KAIZEN_SANDBOX_SECRET is not set; probes are refused.")
    if len(raw) > MAX_HEADER_LENGTH:
        raise ProbeRefused("Probe header too long.")
    # The key has no ":" (see flags.models.KEY_PATTERN); the user id may.
    head, _, signature = raw.rpartition(":")
    flag_and_user, _, ts = head.rpartition(":")
    flag_key, _, user_id = flag_and_user.partition(":")
    if not (flag_key and user_id and ts.isdigit() and signature):
        raise ProbeRefused("Malformed probe header; expected <flag>:<user>:<unix ts>:<hex signature>.")
    expected = hmac.new(secret.encode(), head.encode(), hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, and the header is the caller's.
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise ProbeRefused("Probe signature does not match.")
    if abs(_clock() - int(ts)) > MAX_AGE_SECONDS:
        raise ProbeRefused("Probe header expired (older than 5 minutes, or from the future).")
    return {flag_key: user_id}
