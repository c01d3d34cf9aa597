"""Writing accepted reports: occurrences, grouping into issues, classification, the outbox.

One function stores a batch in one transaction, whether the batch is one report (direct mode)
or 500 drained from the Redis stream. It is idempotent: an occurrence is keyed by its project and
event id, and only newly inserted occurrences move the issue's counters, so a redelivered batch changes
nothing. The SQL is the portable subset PostgreSQL and SQLite share (ON CONFLICT, RETURNING).
"""

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from flags.rollout.start import rollout_reach
from healing import metrics
from healing.ingest import classify
from healing.models import EnqueueState, Issue, IssueUser, Occurrence, Stage
from healing.stream import fanout

logger = logging.getLogger("kaizen.ingest")

# Column → PostgreSQL type. Rows travel to the database as one JSON parameter per statement
# (jsonb_to_recordset / json_each): building and parsing a 7,000-placeholder VALUES list cost
# more than the insert itself.
OCCURRENCE_COLUMNS = {
    "event_id": "uuid", "project_id": "bigint", "issue_id": "uuid", "source": "text", "received_at": "timestamptz",
    "timestamp": "timestamptz", "user_id": "text", "user_email": "text", "session_id": "text", "url": "text",
    "route": "text", "release": "text", "environment": "text", "message": "text", "payload": "jsonb",
}  # fmt: skip
ISSUE_COLUMNS = {
    "id": "uuid", "project_id": "bigint", "fingerprint": "text", "grouping": "text", "type": "text",
    "severity": "text", "base_severity": "text", "rule_id": "bigint", "title": "text", "culprit": "text",
    "stage": "text", "first_seen": "timestamptz", "last_seen": "timestamptz", "occurrence_count": "bigint",
    "affected_users": "integer", "times_reopened": "integer", "enqueue_state": "text",
    "enqueued_at": "timestamptz", "enqueue_attempts": "integer", "severity_pinned": "boolean",
}  # fmt: skip
ISSUE_USER_COLUMNS = {"issue_id": "uuid", "user_key": "text"}
# A new report of a resolved issue means the fix did not hold; of a mitigated one, that its cause
# (fixed only for the users already affected) reached someone else: both go back to work.
REOPENED_BY_NEW_REPORTS = (Stage.RESOLVED, Stage.MITIGATED)


@dataclass
class StoreResult:
    stored: int = 0  # newly written occurrences
    duplicates: int = 0  # already stored (a resend or a redelivered batch)
    to_enqueue: dict[str, str] = field(default_factory=dict)  # issue id → severity queue


@dataclass
class _Group:
    """The batch's new occurrences of one issue."""

    record: dict[str, Any]  # the first one: it names a new issue
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    users: set[str] = field(default_factory=set)
    classification: classify.Classification | None = None


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _select_rows(columns: dict[str, str]) -> str:
    """A SELECT yielding the rows of the JSON array passed as its one parameter.

    `WHERE true` is SQLite's required disambiguation for INSERT ... SELECT ... ON CONFLICT.
    """
    if connection.vendor == "postgresql":
        fields = ", ".join(f"{_q(c)} {t}" for c, t in columns.items())
        return f"SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r({fields}) WHERE true"  # noqa: S608 - our column names
    return "SELECT " + ", ".join(f"value ->> '$.{c}'" for c in columns) + " FROM json_each(%s) WHERE true"  # noqa: S608


def _insert_sql(table: str, columns: dict[str, str]) -> str:
    return f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in columns)}) {_select_rows(columns)}"


def _db_time(value: datetime) -> str:
    # UTC without offset: how the ORM stores datetimes on SQLite (so text comparisons hold) and
    # what PostgreSQL reads in the UTC session Django opens. isoformat, not strftime: glibc's %Y
    # does not zero-pad, and PostgreSQL reads "9-06-01" as 2009 (or 2001).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _client_time(value: str | None) -> str | None:
    """The client's own timestamp for its column, or None when it cannot be stored. The edge
    (healing.ingest.accept) already settles it; this guards entries accepted before it did, which would
    otherwise fail their whole batch (the payload keeps the value as sent)."""
    if not value:
        return None
    try:
        return _db_time(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None


def _hex(value: Any) -> str:
    # PostgreSQL returns uuid.UUID, SQLite the 32-character hex the ORM stores.
    return value.hex if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).hex


def _fromtimestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _user_key(report: dict[str, Any]) -> str:
    user = report.get("user") or {}
    return str(user.get("id") or user.get("email") or report.get("session_id") or "")[:200]


def _insert_occurrences(records: Sequence[dict[str, Any]]) -> set[tuple[int, str]]:
    """Insert, skipping event ids the project already has; returns the new (project, hex event id)."""
    rows = []
    for record in records:
        report = record["report"]
        user = report.get("user") or {}
        rows.append({
            "event_id": uuid.UUID(record["event_id"]).hex,
            "project_id": record["project_id"],
            "issue_id": uuid.UUID(record["issue_id"]).hex,
            "source": record["source"],
            "received_at": _db_time(_fromtimestamp(record["received_at"])),
            "timestamp": _client_time(report.get("timestamp")),
            "user_id": user.get("id") or "",
            "user_email": user.get("email") or "",
            "session_id": report.get("session_id") or "",
            "url": report.get("url") or "",
            "route": report.get("route") or "",
            "release": report.get("release") or "",
            "environment": report.get("environment") or "",
            "message": report["message"],
            "payload": report,
        })  # fmt: skip
    sql = (
        _insert_sql(Occurrence._meta.db_table, OCCURRENCE_COLUMNS)
        + " ON CONFLICT (project_id, event_id) DO NOTHING RETURNING project_id, event_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [orjson.dumps(rows).decode()])
        return {(int(row[0]), _hex(row[1])) for row in cursor.fetchall()}


def _insert_users(pairs: Sequence[tuple[str, str]]) -> Counter:
    """Record (issue, user) pairs; returns, per issue, how many users are new to it."""
    if not pairs:
        return Counter()
    rows = [{"issue_id": uuid.UUID(issue_id).hex, "user_key": user} for issue_id, user in pairs]
    sql = (
        _insert_sql(IssueUser._meta.db_table, ISSUE_USER_COLUMNS)
        + " ON CONFLICT (issue_id, user_key) DO NOTHING RETURNING issue_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [orjson.dumps(rows).decode()])
        return Counter(str(uuid.UUID(_hex(row[0]))) for row in cursor.fetchall())


def _upsert_issues(groups: dict[str, _Group], new_users: Counter, now: datetime) -> list[tuple]:
    table = _q(Issue._meta.db_table)
    rows = []
    for issue_id in sorted(groups):  # one lock order for every consumer: no deadlocks
        group = groups[issue_id]
        record, report = group.record, group.record["report"]
        severity = group.classification.severity
        rows.append({
            "id": uuid.UUID(issue_id).hex,
            "project_id": record["project_id"],
            "fingerprint": record["fingerprint"],
            "grouping": record["grouping"],
            "type": group.classification.type,
            "severity": severity,
            "base_severity": severity,
            "rule_id": group.classification.rule_id,
            "title": _title(report),
            "culprit": (report.get("route") or report.get("url") or "")[:255],
            "stage": Stage.DETECTED.value,
            "first_seen": _db_time(group.first),
            "last_seen": _db_time(group.last),
            "occurrence_count": group.count,
            "affected_users": new_users.get(issue_id, 0),
            "times_reopened": 0,
            "enqueue_state": EnqueueState.PENDING.value,
            "enqueued_at": _db_time(now),
            "enqueue_attempts": 0,
            "severity_pinned": False,
        })  # fmt: skip
    sql = f"""
        {_insert_sql(Issue._meta.db_table, ISSUE_COLUMNS)}
        ON CONFLICT (id) DO UPDATE SET
          occurrence_count = {table}.occurrence_count + excluded.occurrence_count,
          affected_users = {table}.affected_users + excluded.affected_users,
          last_seen = CASE WHEN excluded.last_seen > {table}.last_seen
                           THEN excluded.last_seen ELSE {table}.last_seen END
        RETURNING id, occurrence_count, affected_users, severity, base_severity, rule_id, severity_pinned
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [orjson.dumps(rows).decode()])
        return cursor.fetchall()


def _title(report: dict[str, Any]) -> str:
    exception = report.get("exception")
    if exception:
        title = f"{exception['type']}: {exception.get('value') or report['message']}"
    else:
        title = report["message"]
    return title.splitlines()[0][:255] if title else "(no message)"


def _group(records: Iterable[dict[str, Any]], rules: list[classify.CompiledRule]) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    for record in records:
        group = groups.setdefault(record["issue_id"], _Group(record=record))
        report = record["report"]
        seen = _fromtimestamp(record["received_at"])
        group.count += 1
        group.first = seen if group.first is None or seen < group.first else group.first
        group.last = seen if group.last is None or seen > group.last else group.last
        if user := _user_key(report):
            group.users.add(user)
        found = classify.classify(report=report, project_id=record["project_id"], rules=rules)
        if group.classification is None:
            group.classification = found
        elif classify.more_severe(found.severity, group.classification.severity) != group.classification.severity:
            group.classification = found
    return groups


def reports_store(*, records: Sequence[dict[str, Any]]) -> StoreResult:
    """Store a batch of accepted reports; returns what to enqueue once the transaction commits."""
    result = StoreResult()
    if not records:
        return result
    rules = classify.active_rules()
    rules_by_id = {rule.id: rule for rule in rules}
    now = timezone.now()
    by_event: dict[tuple[int, str], dict[str, Any]] = {}
    for record in records:  # a batch may carry the same event twice (a client resend)
        by_event.setdefault((int(record["project_id"]), uuid.UUID(record["event_id"]).hex), record)
    with transaction.atomic():
        inserted = _insert_occurrences(list(by_event.values()))
        fresh = [record for key, record in by_event.items() if key in inserted]
        result.stored = len(fresh)
        result.duplicates = len(records) - len(fresh)
        if not fresh:
            return result
        groups = _group(fresh, rules)
        pairs = sorted((issue_id, user) for issue_id, group in groups.items() for user in group.users)
        watched = Issue.objects.filter(id__in=list(groups), stage__in=(*REOPENED_BY_NEW_REPORTS, Stage.DEPLOYED))
        stages = {str(pk): stage for pk, stage in watched.values_list("id", "stage")}
        reopened = {issue_id for issue_id, stage in stages.items() if stage in REOPENED_BY_NEW_REPORTS}
        if deployed := [issue_id for issue_id, stage in stages.items() if stage == Stage.DEPLOYED]:
            _fix_reach(fresh, deployed)  # before the issues are locked: the rollout engine's lock order
        new_users = _insert_users(pairs)
        changed_severity: dict[str, tuple[str, str]] = {}
        created: set[str] = set()  # inserted pending by the upsert: no update needed to enqueue them
        for row in _upsert_issues(groups, new_users, now):
            issue_id = str(uuid.UUID(_hex(row[0])))
            occurrences, affected, severity, base, rule_id, pinned = row[1:]
            group = groups[issue_id]
            is_new = occurrences == group.count
            if is_new:
                created.add(issue_id)
            new_base = classify.more_severe(base, group.classification.severity)
            escalated = classify.escalated_severity(
                base=new_base, rule=rules_by_id.get(rule_id), affected_users=affected, occurrences=occurrences
            )
            escalated = severity if pinned else classify.more_severe(escalated, severity)
            if (escalated, new_base) != (severity, base):
                changed_severity[issue_id] = (escalated, new_base)
            if is_new or issue_id in reopened or escalated != severity:
                result.to_enqueue[issue_id] = escalated
            metrics.REPORTS_STORED.labels(
                type=group.classification.type, severity=escalated, outcome="new_issue" if is_new else "grouped"
            ).inc(group.count)
        for issue_id, (severity, base) in changed_severity.items():
            # Guarded: the owner may pin the severity in the console while this batch runs.
            Issue.objects.filter(id=issue_id, severity_pinned=False).update(severity=severity, base_severity=base)
        if reopened:
            _reopen(reopened, now)
        again = [pk for pk in result.to_enqueue if pk not in reopened and pk not in created]
        if again:
            Issue.objects.filter(id__in=again).update(enqueue_state=EnqueueState.PENDING, enqueued_at=now)
        fanout.occurrences_status(records=fresh)  # the reporting sessions hear where their issue stands
    if result.duplicates:
        metrics.REPORTS_STORED.labels(type="", severity="", outcome="duplicate").inc(result.duplicates)
    return result


def _fix_reach(records: Sequence[dict[str, Any]], issue_ids: list[str]) -> None:
    """Users reporting a deployed issue whose fix has not reached them yet get it now, so that
    what their session is told next ("Fixed") is true for them."""
    users: dict[str, set[str]] = {issue_id: set() for issue_id in issue_ids}
    for record in records:
        user_id = (record["report"].get("user") or {}).get("id")
        if user_id and record["issue_id"] in users:
            users[record["issue_id"]].add(str(user_id))
    users = {issue_id: ids for issue_id, ids in users.items() if ids}
    if users and (reached := rollout_reach(issue_users=users)):
        logger.info("fix given to users who met the bug during its rollout", extra={"reached": reached})


def _reopen(issue_ids: set[str], now: datetime) -> None:
    from django.db.models import F

    Issue.objects.filter(id__in=issue_ids, stage__in=REOPENED_BY_NEW_REPORTS).update(
        stage=Stage.DETECTED,
        resolved_at=None,
        times_reopened=F("times_reopened") + 1,
        enqueue_state=EnqueueState.PENDING,
        enqueued_at=now,
    )
    logger.info("issues reopened by new occurrences", extra={"issues": sorted(issue_ids)})
