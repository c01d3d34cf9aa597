"""The users' sessions: minted here, identified when the page learns who the user is, their
tokens refreshed, their recordings and command outcomes kept for the owner."""

import logging
import secrets
from typing import Any

from django.conf import settings
from django.utils import timezone

from healing.audit import audit_record
from healing.models import Issue, Occurrence, SessionRecording, UserSession
from healing.stream.tokens import TokenError, token_check, token_issue

logger = logging.getLogger("kaizen.stream")

EVENTS_PATH = "/api/v1/sessions/{session_id}/events"


def _user_fields(user: dict[str, Any] | None) -> dict[str, str]:
    user = user or {}
    fields = {"user_id": user.get("id"), "user_name": user.get("name"), "user_email": user.get("email")}
    return {name: str(value)[: UserSession._meta.get_field(name).max_length] for name, value in fields.items() if value}


def session_create(*, project_id: int, user: dict[str, Any] | None, user_agent: str = "") -> UserSession:
    """A new session with an id nobody can guess (192 random bits)."""
    return UserSession.objects.create(
        project_id=project_id,
        session_id=secrets.token_urlsafe(24),
        user_agent=user_agent[:500],
        **_user_fields(user),
    )


def session_answer(*, session: UserSession) -> dict[str, Any]:
    """What the page gets for a new or refreshed session: a fresh token and where to stream from."""
    return {
        "session_id": session.session_id,
        "token": token_issue(project_id=session.project_id, session_id=session.session_id),
        "expires_in": settings.KAIZEN_SESSION_TOKEN_SECONDS,
        "stream_url": settings.KAIZEN_STREAM_URL + EVENTS_PATH.format(session_id=session.session_id),
    }


def session_authenticate(*, project_id: int, session_id: str, token: str, max_age: float | None = None) -> UserSession:
    """The session a request with `token` may act for, in the project whose key it came with."""
    token_project = token_check(token=token, session_id=session_id, max_age=max_age)
    session = UserSession.objects.filter(session_id=session_id, project_id=project_id).first()
    if token_project != project_id or session is None:
        raise TokenError("wrong_session", "This token is not for a session of this project.", status=403)
    return session


def session_refresh(*, project_id: int, session_id: str, token: str, user: dict[str, Any] | None = None) -> UserSession:
    """A token that expired less than the grace period ago still refreshes: a laptop that slept
    through the token's life resumes its stream without a new session."""
    grace = settings.KAIZEN_SESSION_TOKEN_SECONDS + settings.KAIZEN_SESSION_REFRESH_GRACE_SECONDS
    session = session_authenticate(project_id=project_id, session_id=session_id, token=token, max_age=grace)
    fields = {**_user_fields(user), "last_seen_at": timezone.now()}
    UserSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)
    return session


def session_reported(*, session: UserSession, issue_id: str) -> Issue:
    """The issue, if this session reported it; else TokenError 403 (a session answers and records
    only for its own problems)."""
    issue = Issue.objects.filter(pk=issue_id, project_id=session.project_id).first()
    if issue is None or not Occurrence.objects.filter(issue=issue, session_id=session.session_id).exists():
        raise TokenError("not_your_issue", "This session did not report that issue.", status=403)
    return issue


def recording_store(*, session: UserSession, issue: Issue, events: list[Any], size: int) -> SessionRecording:
    """Keep the rrweb events the user agreed to record (the endpoint has capped the size)."""
    return SessionRecording.objects.create(
        session=session, issue=issue, events=events, size_bytes=size, event_count=len(events)
    )


def command_outcome_record(*, session: UserSession, command: dict[str, Any], outcome: str, reason: str) -> None:
    """A page reports a command it ran or refused: kept in the audit log for the owner to see."""
    audit_record(
        actor=f"session:{session.session_id[:12]}",
        action=f"session.command_{outcome}",
        target=f"user-session:{session.pk}",
        detail={"command": command, "reason": reason[:500]},
    )
    log = logger.info if outcome == "done" else logger.warning
    log("page command %s", outcome, extra={"session": session.pk, "type": command.get("type"), "reason": reason})
