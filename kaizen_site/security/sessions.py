"""Console sessions: one AdminSession row per sign-in, held to 24 hours and revocable.

The row is the source of truth: a session whose row is missing, revoked or past `expires_at` is
signed out at its next request, whatever the session cookie says.
"""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone
from django.utils.module_loading import import_string

from kaizen_site.models import AdminSession

from .audit import console_audit
from .network import client_ip

logger = logging.getLogger("kaizen.security")

# last_seen_at is written at most this often, not on every request.
SEEN_EVERY = timedelta(minutes=1)


def device_fingerprint(request) -> str:
    """Tells one browser from another without storing anything more identifying than the row shows."""
    meta = request.META
    raw = "\n".join((meta.get("HTTP_USER_AGENT", ""), meta.get("HTTP_ACCEPT_LANGUAGE", "")))
    return hashlib.sha256(raw.encode()).hexdigest()


def admin_session_open(*, request, user) -> AdminSession | None:
    """Called on every sign-in (django.contrib.auth's user_logged_in), after the session key rotated."""
    session_key = request.session.session_key
    if not session_key:
        request.session.save()
        session_key = request.session.session_key
    now = timezone.now()
    ip = client_ip(request) or None
    row, _ = AdminSession.objects.update_or_create(
        session_key=session_key,
        defaults={
            "user": user,
            "fingerprint": device_fingerprint(request),
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:500],
            "ip": ip,
            "created_at": now,
            "expires_at": now + timedelta(seconds=settings.SESSION_COOKIE_AGE),
            "last_seen_at": now,
        },
    )
    # The row is the sign-in's record (the console lists them); the audit log keeps the acts.
    return row


def admin_session_current(request) -> AdminSession | None:
    """The signed-in request's row if it is still good; records when it was last seen."""
    key = request.session.session_key
    row = AdminSession.objects.filter(session_key=key).first() if key else None
    if row is None or not row.active:
        return None
    now = timezone.now()
    if now - row.last_seen_at > SEEN_EVERY:
        AdminSession.objects.filter(pk=row.pk).update(last_seen_at=now)
    return row


def admin_session_end(request, *, reason: str) -> None:
    user = request.user
    logger.info("console session ended", extra={"user": user.get_username(), "reason": reason})
    logout(request)


def admin_session_revoke(*, session: AdminSession, actor: str) -> bool:
    """Ends `session` now: its row says revoked and its Django session is deleted from the store,
    so the browser holding it is signed out at its next request. False if it had already ended."""
    changed = AdminSession.objects.filter(pk=session.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=actor
    )
    store: SessionBase = import_string(f"{settings.SESSION_ENGINE}.SessionStore")()
    store.delete(session.session_key)
    if changed:
        console_audit(actor=actor, action="console.session_revoke", target=f"admin_session:{session.pk}",
                      detail={"user": session.user.get_username(), "ip": session.ip})  # fmt: skip
    return bool(changed)
