"""Writing accepted reports: occurrences, grouping into issues, classification, the outbox.

One function stores a batch in one transaction, whether the batch is one report (direct mode)
or 500 drained from the Redis stream. It is idempotent: an occurrence is keyed by its event id,
and only newly inserted occurrences move the issue's counters, so a redelivered batch changes
nothing. The SQL is the portable subset PostgreSQL and SQLite share (ON CONFLICT, RETURNING).
"""

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import classify, metrics
from .models import EnqueueState, Issue, IssueUser, Occurrence, Stage

logger = logging.getLogger("kaizen.ingest")

OCCURRENCE_COLUMNS = (
    "event_id", "issue_id", "source", "received_at", "timestamp", "user_id", "user_email",
    "session_id", "url", "route", "release", "environment", "message", "payload",
)  # fmt: skip
ISSUE_COLUMNS = (
    "id", "project_id", "fingerprint", "grouping", "type", "severity", "base_severity", "rule_id",
    "title", "culprit", "stage", "first_seen", "last_seen", "occurrence_count", "affected_users",
    "times_reopened", "enqueue_state", "enqueued_at", "enqueue_attempts",
)  # fmt: skip


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


def _prep(model, column: str, value: Any) -> Any:
    """Adapt a Python value the way the ORM would (UUIDs are text on SQLite, JSON is encoded...)."""
    return _fields_by_column(model)[column].get_db_prep_value(value, connection)


@cache
def _fields_by_column(model) -> dict[str, Any]:
    return {f.column: f for f in model._meta.concrete_fields}


def _values_sql(columns: Sequence[str], rows: int) -> str:
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return ", ".join([one] * rows)


def _fromtimestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _user_key(report: dict[str, Any]) -> str:
    user = report.get("user") or {}
    return str(user.get("id") or user.get("email") or report.get("session_id") or "")[:200]


def _insert_occurrences(records: Sequence[dict[str, Any]]) -> set[Any]:
    """Insert, skipping event ids already stored; returns the event ids (as stored) that were new."""
    rows, params = 0, []
    for record in records:
        report = record["report"]
        user = report.get("user") or {}
        values = {
            "event_id": record["event_id"],
            "issue_id": record["issue_id"],
            "source": record["source"],
            "received_at": _fromtimestamp(record["received_at"]),
            "timestamp": datetime.fromisoformat(report["timestamp"]) if report.get("timestamp") else None,
            "user_id": user.get("id") or "",
            "user_email": user.get("email") or "",
            "session_id": report.get("session_id") or "",
            "url": report.get("url") or "",
            "route": report.get("route") or "",
            "release": report.get("release") or "",
            "environment": report.get("environment") or "",
            "message": report["message"],
            "payload": report,
        }
        params.extend(_prep(Occurrence, column, values[column]) for column in OCCURRENCE_COLUMNS)
        rows += 1
    sql = (
        f"INSERT INTO {Occurrence._meta.db_table} ({', '.join(OCCURRENCE_COLUMNS)}) "
        f"VALUES {_values_sql(OCCURRENCE_COLUMNS, rows)} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _insert_users(pairs: Sequence[tuple[Any, str]]) -> Counter:
    """Record (issue, user) pairs; returns, per issue, how many users are new to it."""
    if not pairs:
        return Counter()
    params = [p for issue_id, user in pairs for p in (_prep(IssueUser, "issue_id", issue_id), user)]
    sql = (
        f"INSERT INTO {IssueUser._meta.db_table} (issue_id, user_key) VALUES {_values_sql(('i', 'u'), len(pairs))} "
        "ON CONFLICT (issue_id, user_key) DO NOTHING RETURNING issue_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return Counter(str(_as_uuid(row[0])) for row in cursor.fetchall())


def _as_uuid(value: Any) -> str:
    # PostgreSQL returns uuid.UUID, SQLite the 32-character hex the ORM stores.
    return str(Issue._meta.pk.to_python(value))


def _upsert_issues(groups: dict[str, _Group], new_users: Counter, now: datetime) -> list[tuple]:
    table = Issue._meta.db_table
    params: list[Any] = []
    for issue_id in sorted(groups):  # one lock order for every consumer: no deadlocks
        group = groups[issue_id]
        record, report = group.record, group.record["report"]
        severity = group.classification.severity
        values = {
            "id": issue_id,
            "project_id": record["project_id"],
            "fingerprint": record["fingerprint"],
            "grouping": record["grouping"],
            "type": group.classification.type,
            "severity": severity,
            "base_severity": severity,
            "rule_id": group.classification.rule_id,
            "title": _title(report),
            "culprit": (report.get("route") or report.get("url") or "")[:255],
            "stage": Stage.DETECTED,
            "first_seen": group.first,
            "last_seen": group.last,
            "occurrence_count": group.count,
            "affected_users": new_users.get(issue_id, 0),
            "times_reopened": 0,
            "enqueue_state": EnqueueState.PENDING,
            "enqueued_at": now,
            "enqueue_attempts": 0,
        }
        params.extend(_prep(Issue, column, values[column]) for column in ISSUE_COLUMNS)
    sql = f"""
        INSERT INTO {table} ({", ".join(ISSUE_COLUMNS)}) VALUES {_values_sql(ISSUE_COLUMNS, len(groups))}
        ON CONFLICT (id) DO UPDATE SET
          occurrence_count = {table}.occurrence_count + excluded.occurrence_count,
          affected_users = {table}.affected_users + excluded.affected_users,
          last_seen = CASE WHEN excluded.last_seen > {table}.last_seen THEN excluded.last_seen ELSE {table}.last_seen END
        RETURNING id, occurrence_count, affected_users, severity, base_severity, rule_id, stage
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
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
    by_event = {}
    for record in records:  # a batch may carry the same event twice (a client resend)
        by_event.setdefault(_prep(Occurrence, "event_id", record["event_id"]), record)
    with transaction.atomic():
        inserted = _insert_occurrences(list(by_event.values()))
        fresh = [record for key, record in by_event.items() if key in inserted]
        result.stored = len(fresh)
        result.duplicates = len(records) - len(fresh)
        if not fresh:
            return result
        groups = _group(fresh, rules)
        pairs = sorted((issue_id, user) for issue_id, group in groups.items() for user in group.users)
        reopened = set(
            str(pk) for pk in Issue.objects.filter(id__in=list(groups), stage=Stage.RESOLVED).values_list("id", flat=True)
        )
        new_users = _insert_users(pairs)
        changed_severity: dict[str, tuple[str, str]] = {}
        for row in _upsert_issues(groups, new_users, now):
            issue_id = _as_uuid(row[0])
            occurrences, affected, severity, base, rule_id, stage = row[1:]
            group = groups[issue_id]
            is_new = occurrences == group.count
            new_base = classify.more_severe(base, group.classification.severity)
            escalated = classify.escalated_severity(
                base=new_base, rule=rules_by_id.get(rule_id), affected_users=affected, occurrences=occurrences
            )
            escalated = classify.more_severe(escalated, severity)
            if (escalated, new_base) != (severity, base):
                changed_severity[issue_id] = (escalated, new_base)
            if is_new or issue_id in reopened or escalated != severity:
                result.to_enqueue[issue_id] = escalated
            metrics.REPORTS_STORED.labels(
                type=group.classification.type, severity=escalated, outcome="new_issue" if is_new else "grouped"
            ).inc(group.count)
        for issue_id, (severity, base) in changed_severity.items():
            Issue.objects.filter(id=issue_id).update(severity=severity, base_severity=base)
        if reopened:
            _reopen(reopened, now)
        again = [pk for pk in result.to_enqueue if pk not in reopened]
        if again:
            Issue.objects.filter(id__in=again).update(enqueue_state=EnqueueState.PENDING, enqueued_at=now)
    if result.duplicates:
        metrics.REPORTS_STORED.labels(type="", severity="", outcome="duplicate").inc(result.duplicates)
    return result


def _reopen(issue_ids: set[str], now: datetime) -> None:
    from django.db.models import F

    Issue.objects.filter(id__in=issue_ids, stage=Stage.RESOLVED).update(
        stage=Stage.DETECTED,
        resolved_at=None,
        times_reopened=F("times_reopened") + 1,
        enqueue_state=EnqueueState.PENDING,
        enqueued_at=now,
    )
    logger.info("issues reopened by new occurrences", extra={"issues": sorted(issue_ids)})
