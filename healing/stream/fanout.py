"""Every IssueEvent, told to the users who met the issue; owner messages and page commands.

Each message is a SessionEvent row first (the stream resumes from the database), then one Redis
PUBLISH per batch carries the rows themselves, so every stream process wakes at once and sends
them without reading the database (healing.stream.hub). Issue events fan out after their
transaction commits: a rolled-back stage move never reaches a user, and a slow fan-out never
holds the issue's row lock.

A flapping issue must not flood a user: per session, a status repeating the stage the user was
last told about that issue is dropped, progress statuses are capped per minute (the next one that
gets through carries the current stage: statuses coalesce), and the ones a user must not miss
(fixed, needs input, a person takes over) pass that cap but not a hard one.
"""

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from healing import messages
from healing.models import (
    Issue,
    IssueEvent,
    Occurrence,
    SessionEvent,
    SessionEventKind,
    Stage,
    UserSession,
)
from kaizen_site import redis_client

logger = logging.getLogger("kaizen.stream")

CHANNEL = "kaizen:session-events"
PUBLISH_CHUNK = 200  # events per PUBLISH: a 1,000-session fan-out is a handful of messages
RATE_WINDOW = timedelta(minutes=1)
# Statuses a user must see even while progress statuses are being capped.
MUST_SEE = (*messages.FINAL_STAGES, Stage.NEEDS_INPUT, Stage.ESCALATED, Stage.ABORTED)


def status_allowed(*, stage: str, last_stage: str | None, recent: int) -> bool:
    """Whether a session gets a status for `stage`, given the stage it was last told for this
    issue and how many statuses it got in the last minute."""
    if stage == last_stage:
        return False
    if recent >= settings.KAIZEN_STREAM_HARD_CAP:
        return False
    return stage in MUST_SEE or recent < settings.KAIZEN_STREAM_STATUSES_PER_MINUTE


def status_payload(
    *, issue_id: str, stage: str, issue_type: str, name: str = "", worded: str = "", at=None
) -> dict[str, Any]:
    """The `status` event the popup renders (the contract in the README's stream section)."""
    progress = messages.progress(stage=stage)
    needs_input = stage == Stage.NEEDS_INPUT
    return {
        "issue_id": str(issue_id),
        "stage": str(stage),
        "message": messages.stage_message(stage=stage, issue_type=issue_type, name=name, worded=worded),
        "step": progress.step,
        "steps": progress.steps,
        "eta_seconds": progress.eta_seconds,
        "final": progress.final,
        "needs_input": needs_input,
        "question": messages.question_for(stage=stage, worded=worded),
        # Needing input, the popup also offers to try again with recording on (with consent).
        "reproduce": needs_input,
        "at": (at or timezone.now()).isoformat(),
    }


def _with_rate_state(sessions) -> Any:
    """Annotate each session with its statuses of the last minute and its latest status (stage and
    issue): one query for the whole fan-out, two index look-ups per session on (session, id)."""
    since = timezone.now() - RATE_WINDOW
    recent = (
        SessionEvent.objects.filter(session=OuterRef("pk"), kind=SessionEventKind.STATUS, created_at__gte=since)
        .order_by()
        .values("session")
        .annotate(n=Count("id"))
        .values("n")
    )
    # The session's latest status, whatever its issue: filtering on the issue here would have the
    # planner scan the issue's events once per session.
    latest = SessionEvent.objects.filter(session=OuterRef("pk"), kind=SessionEventKind.STATUS).order_by("-id")
    return sessions.annotate(
        recent_statuses=Coalesce(Subquery(recent, output_field=IntegerField()), Value(0)),
        last_stage=Subquery(latest.values("payload__stage")[:1]),
        last_issue=Subquery(latest.values("issue_id")[:1]),
    )


def affected_sessions(*, issue: Issue):
    """The sessions with a report of `issue` within the stream window (server-minted ids only:
    a report's session id that no session of ours carries is not a stream)."""
    since = timezone.now() - timedelta(seconds=settings.KAIZEN_STREAM_SESSION_WINDOW_SECONDS)
    reported = (
        Occurrence.objects.filter(issue_id=issue.pk, received_at__gte=since).exclude(session_id="").values("session_id")
    )
    return UserSession.objects.filter(project_id=issue.project_id, session_id__in=reported)


def issue_event_fanout(*, event: IssueEvent) -> None:
    """Call in the transaction that created `event`: it is told to the users once that commits."""
    event_id = event.pk
    transaction.on_commit(lambda: issue_event_deliver(event_id=event_id), robust=True)


def issue_event_deliver(*, event_id: int) -> list[SessionEvent]:
    """One status per session affected by the event's issue, bulk-inserted, then published."""
    event = IssueEvent.objects.select_related("issue").filter(pk=event_id).first()
    if event is None:
        return []
    issue = event.issue
    rows = []
    sessions = _with_rate_state(affected_sessions(issue=issue))
    for session in sessions.only("pk", "session_id", "user_name"):
        # A stage is not told twice in a row; told in between about another issue, it is again.
        last_stage = session.last_stage if str(session.last_issue) == str(issue.pk) else None
        if not status_allowed(stage=event.stage, last_stage=last_stage, recent=session.recent_statuses):
            continue
        payload = status_payload(issue_id=issue.pk, stage=event.stage, issue_type=issue.type,
                                 name=session.user_name, worded=event.message, at=event.created_at)  # fmt: skip
        rows.append(SessionEvent(session=session, issue_id=issue.pk, kind=SessionEventKind.STATUS, payload=payload))
    return _store_and_publish(rows)


def occurrences_status(*, records: Sequence[dict[str, Any]]) -> None:
    """Called by the ingest store inside its batch transaction: each reporting session of ours gets
    a status for its issue's current stage (the popup's first word from the server). No query when
    no report carries a session id; otherwise one look-up and one insert, published after commit."""
    pairs = {
        (int(r["project_id"]), str(r["report"].get("session_id")), str(r["issue_id"]))
        for r in records
        if r["report"].get("session_id")
    }
    if not pairs:
        return
    condition = Q()
    for project_id, session_id, _ in pairs:
        condition |= Q(project_id=project_id, session_id=session_id)
    issues_by_session: dict[str, set[str]] = {}
    for _, session_id, issue_id in pairs:
        issues_by_session.setdefault(session_id, set()).add(issue_id)
    since = timezone.now() - RATE_WINDOW
    sessions = (
        UserSession.objects.filter(condition)
        .annotate(
            recent_statuses=Coalesce(
                Subquery(
                    SessionEvent.objects.filter(
                        session=OuterRef("pk"), kind=SessionEventKind.STATUS, created_at__gte=since
                    )  # fmt: skip
                    .order_by()
                    .values("session")
                    .annotate(n=Count("id"))
                    .values("n"),
                    output_field=IntegerField(),
                ),
                Value(0),
            )
        )
        .only("pk", "session_id", "user_name")
    )
    issues = {str(i.pk): i for i in Issue.objects.filter(pk__in={p[2] for p in pairs}).only("id", "stage", "type")}
    rows = []
    for session in sessions:
        for issue_id in sorted(issues_by_session.get(session.session_id, ())):
            issue = issues.get(issue_id)
            if issue is None or not status_allowed(stage=issue.stage, last_stage=None, recent=session.recent_statuses):
                continue
            payload = status_payload(issue_id=issue_id, stage=issue.stage, issue_type=issue.type,
                                     name=session.user_name)  # fmt: skip
            rows.append(SessionEvent(session=session, issue_id=issue_id, kind=SessionEventKind.STATUS, payload=payload))
    if rows:
        SessionEvent.objects.bulk_create(rows)
        transaction.on_commit(lambda: events_publish(events=rows), robust=True)


def session_message(*, session: UserSession, text: str) -> SessionEvent:
    """The owner's own words to one user (sent from the console)."""
    payload = {"message": text, "from": "owner", "at": timezone.now().isoformat()}
    return _store_and_publish([SessionEvent(session=session, kind=SessionEventKind.MESSAGE, payload=payload)])[0]


COMMANDS = ("retry", "refresh_token", "reload", "show_message")


def session_command(
    *, session: UserSession, type: str, target: str | None = None, payload: dict | None = None
) -> SessionEvent:
    """A command for the session's page (run by window.KAIZEN_DISPATCH, which refuses unknown ones)."""
    if type not in COMMANDS:
        raise ValueError(f"Unknown command {type!r}; the page runs only {', '.join(COMMANDS)}.")
    body = {"type": type, "target": target, "payload": payload or {}}
    return _store_and_publish([SessionEvent(session=session, kind=SessionEventKind.COMMAND, payload=body)])[0]


def reproduction_request(*, session: UserSession, issue: Issue) -> SessionEvent:
    """Ask the user to try again with recording on (the popup asks for their consent first)."""
    payload = status_payload(issue_id=issue.pk, stage=issue.stage, issue_type=issue.type, name=session.user_name)
    payload["message"] = messages.template_text(message_stage="REPRODUCTION_REQUEST", issue_type=issue.type,
                                                name=session.user_name)  # fmt: skip
    payload["reproduce"] = True
    event = SessionEvent(session=session, issue=issue, kind=SessionEventKind.STATUS, payload=payload)
    return _store_and_publish([event])[0]


def _store_and_publish(rows: list[SessionEvent]) -> list[SessionEvent]:
    if not rows:
        return rows
    SessionEvent.objects.bulk_create(rows)  # ids come back on PostgreSQL and SQLite
    transaction.on_commit(lambda: events_publish(events=rows), robust=True)
    return rows


def event_wire(event: SessionEvent) -> dict[str, Any]:
    """A stored event as the hub receives it: enough for a stream to send it without a query."""
    return {"id": event.pk, "s": event.session.session_id, "k": event.kind, "d": event.payload}


def events_publish(*, events: Iterable[SessionEvent]) -> None:
    """Wake the streams: one pipeline of PUBLISHes, each carrying a chunk of events. Without
    Redis the streams poll; if Redis fails, they find the events at their next database read."""
    if not settings.REDIS_URL:
        return
    wire = [event_wire(e) for e in events]
    try:
        pipe = redis_client.get().client.pipeline(transaction=False)
        for start in range(0, len(wire), PUBLISH_CHUNK):
            pipe.publish(CHANNEL, orjson.dumps(wire[start : start + PUBLISH_CHUNK]))
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning(
            "stream wake-up not published; streams will read it from the database", extra={"error": str(exc)}
        )
