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

"Fixed" (deployed) is true once the fix's flag is on for the user in every process that serves
them, and a flag change takes up to flags.evaluate.propagation_seconds() to get there: the stream
holds that status back until then (status_send_after), so a "Try again" clicked at once works.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from flags.evaluate import propagation_seconds
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
# Stages whose words rest on a flag change committed with them: the fix is turned on by its flag.
FLAG_BORNE = frozenset({Stage.DEPLOYED})
# A status's `at` is read inside the transaction that turns the flag on, a moment before it commits.
COMMIT_MARGIN_SECONDS = 0.25


def status_allowed(*, stage: str, last_stage: str | None, recent: int) -> bool:
    """Whether a session gets a status for `stage`, given the stage it was last told for this
    issue and how many statuses it got in the last minute."""
    if stage == last_stage:
        return False
    if recent >= settings.KAIZEN_STREAM_HARD_CAP:
        return False
    return stage in MUST_SEE or recent < settings.KAIZEN_STREAM_STATUSES_PER_MINUTE


def status_send_after(*, kind: str, payload: Any) -> float:
    """When a stream may send this event (epoch seconds; 0 for at once): a status whose stage
    rests on a flag waits until the change has reached every process."""
    if kind != SessionEventKind.STATUS or not isinstance(payload, dict) or payload.get("stage") not in FLAG_BORNE:
        return 0.0
    try:
        at = datetime.fromisoformat(payload["at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0
    return at + COMMIT_MARGIN_SECONDS + propagation_seconds()


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


# The sessions that reported the issue within the stream window, with their rate state, in one
# statement. Its shape is fixed, whatever the planner's row estimates (a fresh issue's reports and
# sessions are not analysed yet: given the chance, it joined every session of the project to every
# report): the reporting session ids first, once each, then index look-ups per session. Each
# session is found by its unique id alone and its project checked after: the `LIMIT 1` subquery is
# neither flattened into a join nor given the project condition, which would let the planner pick
# the project's index and filter all of its sessions, once per session. Only server-minted ids
# count: a report's session id that no session of ours carries is not a stream.
_TARGETS_SQL = f"""
WITH reporters AS MATERIALIZED (
    SELECT DISTINCT o.session_id FROM {Occurrence._meta.db_table} o
    WHERE o.issue_id = %(issue)s AND o.received_at >= %(reported_since)s AND o.session_id <> ''
)
SELECT s.id, s.session_id, s.user_name, rate.recent, latest.stage, latest.issue_id
FROM reporters r
CROSS JOIN LATERAL (
    SELECT u.id, u.project_id, u.session_id, u.user_name FROM {UserSession._meta.db_table} u
    WHERE u.session_id = r.session_id LIMIT 1
) s
CROSS JOIN LATERAL (
    SELECT count(*) AS recent FROM {SessionEvent._meta.db_table} e
    WHERE e.session_id = s.id AND e.kind = %(status)s AND e.created_at >= %(rate_since)s
) rate
LEFT JOIN LATERAL (
    -- The session's latest status, whatever its issue, on the (session, id) index: filtering on
    -- the issue here would scan the issue's events once per session.
    SELECT e.payload ->> 'stage' AS stage, e.issue_id FROM {SessionEvent._meta.db_table} e
    WHERE e.session_id = s.id AND e.kind = %(status)s ORDER BY e.id DESC LIMIT 1
) latest ON true
WHERE s.project_id = %(project)s
"""  # noqa: S608 - our table names; every value is a parameter


@dataclass(frozen=True)
class Target:
    """A session to tell about an issue, with what the rate limit needs to know about it."""

    pk: int
    session_id: str
    user_name: str
    recent_statuses: int  # statuses of the last minute, any issue
    last_stage: str | None  # of its latest status...
    last_issue: str | None  # ...and that status's issue


def affected_sessions(*, issue: Issue) -> list[Target]:
    """The sessions with a report of `issue` within the stream window, and their rate state."""
    now = timezone.now()
    reported_since = now - timedelta(seconds=settings.KAIZEN_STREAM_SESSION_WINDOW_SECONDS)
    if connection.vendor != "postgresql":
        return _targets_orm(issue=issue, reported_since=reported_since, rate_since=now - RATE_WINDOW)
    params = {
        "issue": issue.pk,
        "project": issue.project_id,
        "status": SessionEventKind.STATUS.value,
        "reported_since": reported_since,
        "rate_since": now - RATE_WINDOW,
    }
    with connection.cursor() as cursor:
        cursor.execute(_TARGETS_SQL, params)
        return [
            Target(
                pk=pk,
                session_id=sid,
                user_name=name,
                recent_statuses=recent,
                last_stage=stage,
                last_issue=None if last_issue is None else str(last_issue),
            )  # fmt: skip
            for pk, sid, name, recent, stage, last_issue in cursor.fetchall()
        ]


def _targets_orm(*, issue: Issue, reported_since, rate_since) -> list[Target]:
    """The same through the ORM, for SQLite (no LATERAL): correlated subqueries per session."""
    reported = (
        Occurrence.objects.filter(issue_id=issue.pk, received_at__gte=reported_since)
        .exclude(session_id="")
        .values("session_id")
    )
    statuses = SessionEvent.objects.filter(session=OuterRef("pk"), kind=SessionEventKind.STATUS)
    recent = statuses.filter(created_at__gte=rate_since).order_by().values("session").annotate(n=Count("id"))
    latest = statuses.order_by("-id")
    sessions = UserSession.objects.filter(project_id=issue.project_id, session_id__in=reported).annotate(
        recent_statuses=Coalesce(Subquery(recent.values("n"), output_field=IntegerField()), Value(0)),
        last_stage=Subquery(latest.values("payload__stage")[:1]),
        last_issue=Subquery(latest.values("issue_id")[:1]),
    )
    return [
        Target(
            pk=s.pk,
            session_id=s.session_id,
            user_name=s.user_name,
            recent_statuses=s.recent_statuses,
            last_stage=s.last_stage,
            last_issue=None if s.last_issue is None else str(s.last_issue),
        )  # fmt: skip
        for s in sessions.only("pk", "session_id", "user_name")
    ]


def issue_event_fanout(*, event: IssueEvent) -> None:
    """Call in the transaction that created `event`: it is told to the users once that commits."""
    transaction.on_commit(lambda: issue_event_deliver(event=event), robust=True)


def issue_event_deliver(*, event: IssueEvent) -> list[dict[str, Any]]:
    """One status per session affected by the event's issue, inserted in one statement, then
    published; returns the events as published. The words depend only on the user's (first) name:
    each distinct one is rendered once, and the rows share its payload. `event` is the committed
    row as its creator holds it (with its issue), so telling costs no second read of either."""
    issue, issue_key = event.issue, str(event.issue_id)
    names: dict[str, str] = {}  # user name → the name the words use
    payloads: dict[str, dict[str, Any]] = {}  # the name the words use → payload
    told: list[tuple[Target, dict[str, Any]]] = []
    for target in affected_sessions(issue=issue):
        # A stage is not told twice in a row; told in between about another issue, it is again.
        last_stage = target.last_stage if target.last_issue == issue_key else None
        if not status_allowed(stage=event.stage, last_stage=last_stage, recent=target.recent_statuses):
            continue
        if (name := names.get(target.user_name)) is None:
            name = names[target.user_name] = messages.display_name(target.user_name)
        if name not in payloads:
            payloads[name] = status_payload(issue_id=issue.pk, stage=event.stage, issue_type=issue.type, name=name,
                                            worded=event.message, at=event.created_at)  # fmt: skip
        told.append((target, payloads[name]))
    if not told:
        return []
    ids = _statuses_insert(issue_id=issue.pk, told=told)
    # What event_wire makes of a stored event, without building a model instance per row.
    wire = [
        {"id": pk, "s": target.session_id, "k": SessionEventKind.STATUS.value, "d": payload}
        for pk, (target, payload) in zip(ids, told, strict=True)
    ]
    transaction.on_commit(lambda: wire_publish(wire=wire), robust=True)
    return wire


def _statuses_insert(*, issue_id, told: list[tuple[Target, dict[str, Any]]]) -> list[int]:
    """Insert one issue's statuses with one INSERT ... SELECT ... RETURNING id, in `told`'s order.
    The rows go as one JSON document made by orjson, each distinct payload once: bulk_create (a JSON
    adapter and five parameters per row) and array parameters (escaped element by element in
    Python) took longer for a thousand rows than the insert itself."""
    if connection.vendor != "postgresql":
        rows = [SessionEvent(session_id=target.pk, issue_id=issue_id, kind=SessionEventKind.STATUS, payload=payload)
                for target, payload in told]  # fmt: skip
        return [row.pk for row in SessionEvent.objects.bulk_create(rows)]  # ids come back on SQLite too
    index: dict[int, int] = {}  # id(payload) → its place in `payloads`
    payloads, rows = [], []
    for target, payload in told:
        if id(payload) not in index:
            index[id(payload)] = len(payloads)
            payloads.append(payload)
        rows.append((target.pk, index[id(payload)]))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SessionEvent._meta.db_table} (session_id, issue_id, kind, payload, created_at) "  # noqa: S608 - our table
            "SELECT (r.row ->> 0)::bigint, %(issue)s, %(kind)s, %(payloads)s::jsonb -> (r.row ->> 1)::int, %(now)s "
            "FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(row, n) ORDER BY r.n RETURNING id",
            {
                "issue": issue_id,
                "kind": SessionEventKind.STATUS.value,
                "payloads": orjson.dumps(payloads).decode(),
                "now": timezone.now(),
                "rows": orjson.dumps(rows).decode(),
            },
        )
        # RETURNING comes in the order the rows were inserted (bulk_create relies on it too).
        return [pk for (pk,) in cursor.fetchall()]


def occurrences_status(*, records: Sequence[dict[str, Any]]) -> None:
    """Called by the ingest store inside its batch transaction: each reporting session of ours gets
    a status for its issue's current stage (the popup's first word from the server). No query when
    no report carries a session id; otherwise one look-up of the sessions and, for those found,
    one of their issues' stages and one insert, published after commit."""
    pairs = {
        (int(r["project_id"]), str(r["report"].get("session_id")), str(r["issue_id"]))
        for r in records
        if r["report"].get("session_id")
    }
    if not pairs:
        return
    # One condition per project (a batch rarely holds more than a few): OR-ing a Q per report
    # cost the consumer more than storing the batch.
    session_ids: dict[int, set[str]] = {}
    issues_by_session: dict[tuple[int, str], set[str]] = {}
    for project_id, session_id, issue_id in pairs:
        session_ids.setdefault(project_id, set()).add(session_id)
        issues_by_session.setdefault((project_id, session_id), set()).add(issue_id)
    condition = Q()
    for project_id, ids in session_ids.items():
        condition |= Q(project_id=project_id, session_id__in=ids)
    since = timezone.now() - RATE_WINDOW
    sessions = list(
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
        .only("pk", "project_id", "session_id", "user_name")
    )
    if not sessions:  # reports from pages without our detector's session, or from servers
        return
    wanted = {i for session in sessions for i in issues_by_session[(session.project_id, session.session_id)]}
    issues = {str(i.pk): i for i in Issue.objects.filter(pk__in=wanted).only("id", "stage", "type")}
    rows = []
    for session in sessions:
        for issue_id in sorted(issues_by_session[(session.project_id, session.session_id)]):
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
    """Wake the streams for stored events (see wire_publish)."""
    wire_publish(wire=[event_wire(e) for e in events])


def wire_publish(*, wire: list[dict[str, Any]]) -> None:
    """Wake the streams: one pipeline of PUBLISHes, each carrying a chunk of events. Without
    Redis the streams poll; if Redis fails, they find the events at their next database read."""
    if not settings.REDIS_URL:
        return
    try:
        pipe = redis_client.get().client.pipeline(transaction=False)
        for start in range(0, len(wire), PUBLISH_CHUNK):
            pipe.publish(CHANNEL, orjson.dumps(wire[start : start + PUBLISH_CHUNK]))
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning(
            "stream wake-up not published; streams will read it from the database", extra={"error": str(exc)}
        )
