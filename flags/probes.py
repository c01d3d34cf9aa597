"""Signed sandbox assertions: how verification tells the sandbox to replay a request as it must.

Two headers, honoured only where KAIZEN_SANDBOX_MODE is on:

    X-Kaizen-Probe: <token>          forces one flag on for one user (the fix under verification)
    X-Kaizen-Sandbox-User: <token>   the user the request runs as. It stands in for the user's own
                                     credentials, which Kaizen neither stores nor replays.

    <token> = <base64url of the JSON claims>.<hex HMAC-SHA256>
    claims  = {"sub": user id, "flag": flag key (probe only), "nonce": 32 hex, "iat": unix time}

The HMAC is keyed with KAIZEN_SANDBOX_SECRET and covers the header's name, the project, the
request's method and path and the claims, so a captured header is good for one request: on the
endpoint it was made for, under that project, within MAX_AGE_SECONDS, once. Each nonce is
remembered in the cache until the header would have expired anyway.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from rest_framework import status
from rest_framework.exceptions import APIException

logger = logging.getLogger("kaizen.flags")

PROBE = "X-Kaizen-Probe"
SANDBOX_USER = "X-Kaizen-Sandbox-User"
MAX_AGE_SECONDS = 60  # long enough for one replay to travel; a captured header is dead soon after
MAX_HEADER_LENGTH = 1024
NONCE_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_NONCE_KEY = "kaizen:sandbox-nonce:{kind}:{nonce}"
_MEMO = "_kaizen_sandbox_assertions"  # per request: a view may ask twice, a nonce works once


class ProbeRefused(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    error_code = "probe_refused"
    default_detail = "The sandbox assertion header is invalid, expired or already used."


def probe_sign(
    *,
    project_id: int,
    method: str,
    path: str,
    flag_key: str,
    user_id: str,
    issued_at: int | None = None,
    key: str | None = None,
) -> str:
    """The X-Kaizen-Probe value for one request (what verification sends; the tests forge with it)."""
    claims = {"sub": user_id, "flag": flag_key}
    return _sign(kind=PROBE, project_id=project_id, method=method, path=path, claims=claims,
                 issued_at=issued_at, key=key)  # fmt: skip


def sandbox_user_sign(
    *, project_id: int, method: str, path: str, user_id: str, issued_at: int | None = None, key: str | None = None
) -> str:
    """The X-Kaizen-Sandbox-User value for one request."""
    claims = {"sub": user_id}
    return _sign(kind=SANDBOX_USER, project_id=project_id, method=method, path=path, claims=claims,
                 issued_at=issued_at, key=key)  # fmt: skip


def probe_forced_flags(request, *, project_id: int) -> dict[str, str]:
    """{flag key: user id} a valid probe forces on; {} without one.

    Outside the sandbox the header is ignored (logged): a production request must behave exactly
    as if it were absent. In the sandbox a malformed, forged, stale, replayed or misaddressed
    header raises ProbeRefused (403), so verification never mistakes a refused probe for a
    failed fix. `request` is a Django or DRF request; `project_id` is the project it is served for.
    """
    claims = _verified(request, kind=PROBE, project_id=project_id)
    if claims is None:
        return {}
    if not isinstance(claims.get("flag"), str) or not claims["flag"]:
        raise ProbeRefused("The probe names no flag.")
    return {claims["flag"]: claims["sub"]}


def sandbox_user(request, *, project_id: int) -> str | None:
    """The user a valid X-Kaizen-Sandbox-User names, or None without one (or outside the sandbox)."""
    claims = _verified(request, kind=SANDBOX_USER, project_id=project_id)
    return None if claims is None else claims["sub"]


def _message(*, kind: str, project_id: int, method: str, path: str, payload: str) -> bytes:
    return "\n".join((kind.lower(), str(project_id), method.upper(), path, payload)).encode()


def _mac(*, key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _sign(*, kind: str, project_id: int, method: str, path: str, claims: dict[str, str], issued_at: int | None,
          key: str | None) -> str:  # fmt: skip
    issued = int(time.time() if issued_at is None else issued_at)
    body = {**claims, "nonce": secrets.token_hex(16), "iat": issued}
    payload = base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")
    signing_key = settings.KAIZEN_SANDBOX_SECRET if key is None else key
    message = _message(kind=kind, project_id=project_id, method=method, path=path, payload=payload)
    return f"{payload}.{_mac(key=signing_key, message=message)}"


def _verified(request, *, kind: str, project_id: int) -> dict[str, Any] | None:
    """The header's claims once checked (memoised on the request), or None when it is absent."""
    django_request = getattr(request, "_request", request)  # DRF wraps the Django request
    memo = django_request.__dict__.setdefault(_MEMO, {})
    if (kind, project_id) not in memo:
        try:
            memo[(kind, project_id)] = _check(django_request, kind=kind, project_id=project_id)
        except ProbeRefused as exc:
            where = {"header": kind, "path": django_request.path, "project_id": project_id}
            logger.warning("sandbox header refused", extra={**where, "reason": str(exc.detail)})
            raise
    return memo[(kind, project_id)]


def _check(request, *, kind: str, project_id: int) -> dict[str, Any] | None:
    raw = request.headers.get(kind)
    if not raw:
        return None
    if not settings.KAIZEN_SANDBOX_MODE:
        logger.warning("sandbox header ignored outside the sandbox", extra={"header": kind, "path": request.path})
        return None
    secret = settings.KAIZEN_SANDBOX_SECRET
    if not secret:  # an HMAC under an empty key is forgeable by anyone
        raise ProbeRefused("KAIZEN_SANDBOX_SECRET is not set; sandbox headers are refused.")
    if len(raw) > MAX_HEADER_LENGTH:
        raise ProbeRefused(f"{kind} is too long.")
    payload, _, signature = raw.partition(".")
    if not payload or not signature:
        raise ProbeRefused(f"Malformed {kind}; expected <base64url claims>.<hex signature>.")
    expected = _mac(
        key=secret,
        message=_message(kind=kind, project_id=project_id, method=request.method, path=request.path, payload=payload),
    )
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, and the header is the caller's.
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise ProbeRefused(f"{kind} does not match this project, method and path, or is forged.")
    claims = _claims(payload)
    if abs(time.time() - claims["iat"]) > MAX_AGE_SECONDS:
        raise ProbeRefused(f"{kind} expired (older than {MAX_AGE_SECONDS} s, or from the future).")
    # Checked last, so only a genuine header can use up a nonce.
    if not cache.add(_NONCE_KEY.format(kind=kind.lower(), nonce=claims["nonce"]), 1, timeout=2 * MAX_AGE_SECONDS + 1):
        raise ProbeRefused(f"{kind} was already used.")
    return claims


def _claims(payload: str) -> dict[str, Any]:
    """The signed claims. A bad shape here means a bug on the signing side, still refused cleanly."""
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ProbeRefused("The signed claims are not base64url JSON.") from exc
    if not (
        isinstance(claims, dict)
        and isinstance(claims.get("sub"), str)
        and claims["sub"]
        and isinstance(claims.get("iat"), int)
        and not isinstance(claims.get("iat"), bool)
        and isinstance(claims.get("nonce"), str)
        and NONCE_PATTERN.match(claims["nonce"])
    ):
        raise ProbeRefused("The signed claims need sub, iat and a 32-hex nonce.")
    return claims
