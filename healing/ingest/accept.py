"""Accepting problem reports: the path every endpoint shares after parsing.

A report is validated, fingerprinted (so the answer can name its issue) and made durable before
the 2xx: appended to the Redis stream that `healing.ingest.consumer` drains into the database in batches
(the "stream" mode, chosen when Redis is there), or written in its own transaction ("direct").
When Redis fails in stream mode, the reports are written directly instead: the answer is still
a 2xx, and only a database that fails too makes it a 503.

A report the classification rules make P0 (money taken, data lost, the product down) does not
queue behind a flood in the stream: it is written directly and its issue's work published at
once, even in stream mode. Should the database fail, it goes through the stream like the rest.
"""

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.db import DatabaseError, transaction
from pydantic import ValidationError
from rest_framework.exceptions import Throttled

from healing import metrics
from healing.ingest import classify, outbox, store
from healing.ingest.errors import IngestError
from healing.ingest.fingerprint import fingerprint_report
from healing.ingest.redact import report_credentials_redact
from healing.ingest.schemas import IssueReport
from healing.models import Severity, issue_id_for
from healing.projects import ProjectAuth
from kaizen_site import redis_client

logger = logging.getLogger("kaizen.ingest")


@dataclass(frozen=True)
class Accepted:
    event_id: str
    issue_id: str
    stage: str


def report_validate(data: Any) -> dict[str, Any]:
    """Validate a native report; returns it as plain JSON-compatible data."""
    if not isinstance(data, dict):
        raise IngestError("invalid_report", "A report is a JSON object.")
    try:
        return IssueReport.model_validate(data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise IngestError("invalid_report", errors) from None


# Sentry's window for a client's clock (src/sentry/constants.py, MAX_SECS_IN_FUTURE and
# MAX_SECS_IN_PAST): outside it, "the received timestamp is assumed". Beyond keeping absurd dates
# out of the console, this keeps every stored time inside what Python and PostgreSQL can hold.
MAX_SECS_IN_FUTURE = 60
MAX_SECS_IN_PAST = 30 * 24 * 3600


def timestamp_settle(*, report: dict[str, Any], received_at: float) -> None:
    """Keep the client's `timestamp` as UTC when it is plausible; otherwise replace it by the
    received time and note it in the report's `processing` list, with Sentry's error types
    (past_timestamp, future_timestamp), so the console shows what the client sent."""
    sent = report.get("timestamp")
    if sent is None:
        return
    received = datetime.fromtimestamp(received_at, tz=UTC)
    try:
        when = datetime.fromisoformat(sent)
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):  # year 1 at +01:00 is year 0 in UTC
        kind = "invalid_timestamp"
    else:
        if when > received + timedelta(seconds=MAX_SECS_IN_FUTURE):
            kind = "future_timestamp"
        elif when < received - timedelta(seconds=MAX_SECS_IN_PAST):
            kind = "past_timestamp"
        else:
            report["timestamp"] = when.isoformat()
            return
    report["timestamp"] = received.isoformat()
    report.setdefault("processing", []).append({"type": kind, "name": "timestamp", "value": sent})
    logger.info("client timestamp replaced by the received time", extra={"kind": kind, "sent": str(sent)[:64]})


def record_build(*, project: ProjectAuth, report: dict[str, Any], source: str) -> dict[str, Any]:
    """The unit the stream and the store exchange: the report plus where it belongs."""
    report_credentials_redact(report=report)  # before anything is stored, streamed or fingerprinted
    received_at = time.time()
    timestamp_settle(report=report, received_at=received_at)
    fingerprint = fingerprint_report(report)
    event_id = report.get("event_id") or str(uuid.uuid4())
    report["event_id"] = event_id
    return {
        "event_id": event_id,
        "project_id": project.project_id,
        "issue_id": str(issue_id_for(project_id=project.project_id, fingerprint=fingerprint.hash)),
        "fingerprint": fingerprint.hash,
        "grouping": fingerprint.grouping,
        "source": source,
        "received_at": received_at,
        "report": report,
    }


def reports_accept(*, project: ProjectAuth, reports: Sequence[dict[str, Any]], source: str) -> list[Accepted]:
    """Take the project's quota for the reports and make them durable; returns what the client is
    told. Over the quota, nothing is stored and Throttled (429 + Retry-After) is raised."""
    if not reports:
        return []
    records = [record_build(project=project, report=report, source=source) for report in reports]
    window = _quota_window()
    if settings.KAIZEN_INGEST_MODE != "stream":
        if not _quota_take(project=project, window=window, count=len(records)):
            raise Throttled(wait=window.retry_after)
        _records_store(records=records, publish=True)
        stage = "detected"
    elif _urgent(records) and _urgent_store(project=project, window=window, records=records):
        stage = "detected"
    else:
        stage = _stream_append(project=project, window=window, records=records)
    return [Accepted(event_id=r["event_id"], issue_id=r["issue_id"], stage=stage) for r in records]


def _stream_append(*, project: ProjectAuth, window: "QuotaWindow", records: list[dict[str, Any]]) -> str:
    """Append to the stream within the quota; returns the stage to answer ("received", or
    "detected" when Redis failed and the reports were written directly)."""
    try:
        appended = redis_client.get().append_within_quota(
            stream=settings.KAIZEN_INGEST_STREAM,
            quota_key=window.key(project),
            quota=project.rate_limit_per_minute,
            ttl=QUOTA_WINDOW_SECONDS + 1,
            payloads=[orjson.dumps(r) for r in records],
        )
        stage = "received"
    except redis.RedisError as exc:
        logger.warning("Redis failed; reports written straight to the database", extra={"error": str(exc)})
        metrics.INGEST_FALLBACKS.inc(len(records))
        appended = _local_quota_take(project=project, window=window, count=len(records))
        if appended:
            # The broker is usually this same Redis, and a publish to a broker that is down
            # retries before it fails, holding every answer: the issues stay pending in the
            # outbox and its sweep sends them once the broker is back.
            _records_store(records=records, publish=False)
        stage = "detected"
    if not appended:
        raise Throttled(wait=window.retry_after)
    return stage


# (project id, fingerprint) → whether the door found that issue's report P0, for the rules list
# it was found with: a repeat of a known issue skips the rules' regular expressions. The door
# only picks the way in; the consumer classifies every report again.
_door_seen: dict[tuple[int, str], bool] = {}
_door_rules: list[object] = [None]
DOOR_SEEN_MAX = 10_000


def _urgent(records: list[dict[str, Any]]) -> bool:
    """Whether a report of the batch is P0 by the rules (before any escalation, which needs the
    stored history). Rules unreadable: not urgent, the stream takes it."""
    try:
        rules = classify.active_rules()
    except DatabaseError:
        return False
    if _door_rules[0] is not rules:  # reloaded: what was found with the old rules may be wrong
        _door_seen.clear()
        _door_rules[0] = rules
    for record in records:
        key = (record["project_id"], record["fingerprint"])
        p0 = _door_seen.get(key)
        if p0 is None:
            found = classify.classify(report=record["report"], project_id=record["project_id"], rules=rules)
            p0 = found.severity == Severity.P0
            if len(_door_seen) >= DOOR_SEEN_MAX:
                _door_seen.clear()
            _door_seen[key] = p0
        if p0:
            return True
    return False


def _urgent_store(*, project: ProjectAuth, window: "QuotaWindow", records: list[dict[str, Any]]) -> bool:
    """Write a batch holding a P0 report directly and publish its issues' work now; the whole
    batch, so that a 429 never follows a partial write. False, with nothing written, when Redis
    (the quota's counter and the broker) or the database failed: the caller then sends the batch
    the usual way, which copes with either being down and takes the quota again (so it is given
    back here first)."""
    try:
        within = _redis_quota_take(project=project, window=window, count=len(records))
    except redis.RedisError:
        return False
    if not within:
        raise Throttled(wait=window.retry_after)
    try:
        _records_store(records=records, publish=True)
    except DatabaseError as exc:
        logger.warning("urgent report not written directly, sent through the stream", extra={"error": str(exc)})
        _redis_quota_give_back(project=project, window=window, count=len(records))
        return False
    return True


def _records_store(*, records: list[dict[str, Any]], publish: bool) -> None:
    result = store.reports_store(records=records)  # one transaction of its own
    if publish:  # once it has committed (at once, unless a caller's transaction holds this one)
        transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue=result.to_enqueue))


QUOTA_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class QuotaWindow:
    """A fixed one-minute window per project. Over-quota reports are refused after parsing (the
    quota is taken in the same round trip as the append), which keeps the accepted path to one
    call to Redis."""

    index: int
    retry_after: int  # seconds until the window ends

    def key(self, project: ProjectAuth) -> str:
        return f"kaizen:quota:{project.project_id}:{self.index}"


def _quota_window() -> QuotaWindow:
    now = time.time()
    return QuotaWindow(
        index=int(now // QUOTA_WINDOW_SECONDS),
        retry_after=max(1, QUOTA_WINDOW_SECONDS - int(now % QUOTA_WINDOW_SECONDS)),
    )


def _quota_take(*, project: ProjectAuth, window: QuotaWindow, count: int) -> bool:
    """Direct mode: counted in Redis when there is one, else in the cache the embedded default's
    processes share (one machine, where an approximate quota is enough)."""
    if settings.REDIS_URL:
        try:
            return _redis_quota_take(project=project, window=window, count=count)
        except redis.RedisError:
            return _local_quota_take(project=project, window=window, count=count)
    key = window.key(project)
    cache.add(key, 0, timeout=QUOTA_WINDOW_SECONDS + 1)
    return cache.incr(key, count) <= project.rate_limit_per_minute


def _redis_quota_take(*, project: ProjectAuth, window: QuotaWindow, count: int) -> bool:
    key = window.key(project)
    client = redis_client.get().client
    used = client.incrby(key, count)
    if used == count:
        client.expire(key, QUOTA_WINDOW_SECONDS + 1)
    return used <= project.rate_limit_per_minute


def _redis_quota_give_back(*, project: ProjectAuth, window: QuotaWindow, count: int) -> None:
    """Untake what _redis_quota_take took for reports that were not stored. Should Redis fail
    here too, they stay counted: refusing a little early rather than admitting past the quota."""
    try:
        redis_client.get().client.decrby(window.key(project), count)
    except redis.RedisError as exc:
        logger.warning("quota not given back; counted twice this minute", extra={"error": str(exc)})


# While Redis is down the quota is counted per process: Django's cache is that same Redis. Each
# process then allows the whole quota, which over-admits for a few seconds rather than refusing.
_local_quota = LocMemCache("kaizen-ingest-quota", {"TIMEOUT": QUOTA_WINDOW_SECONDS + 1})


def local_quota_forget() -> None:
    """Start every project's local count again (tests: a new database reuses project ids)."""
    _local_quota.clear()


def _local_quota_take(*, project: ProjectAuth, window: QuotaWindow, count: int) -> bool:
    key = window.key(project)
    _local_quota.add(key, 0)
    return _local_quota.incr(key, count) <= project.rate_limit_per_minute
