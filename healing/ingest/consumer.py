"""Draining the Redis ingest stream into the database.

A consumer group gives each entry to one consumer; an entry is acknowledged (and deleted) only
after the batch holding it is committed, so a consumer killed mid-batch leaves its entries
pending, and they are re-claimed by whichever consumer runs next (XAUTOCLAIM). Storing is
idempotent by (project, event id), so a batch stored twice counts once.
https://redis.io/docs/latest/develop/data-types/streams/#consumer-groups

No entry holds the others back: a batch that fails is split in halves until the entry that fails
is alone; an entry that fails alone twice becomes a dead letter (a database row with the entry and
its error) and the rest of the batch is stored without it. A failure is blamed on an entry only
while the database answers; when it does not, nothing is acknowledged and the batch is retried.
The consumer outlives Redis and the database: it waits with backoff and reconnects, and it
recreates its group when a Redis restarted without persistence has lost it.
"""

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from healing.ingest import outbox, store
from healing.models import IngestDeadLetter, Project
from kaizen_site import redis_client

logger = logging.getLogger("kaizen.stream")

GROUP = "kaizen-store"
CLAIM_IDLE_MS = 30_000  # an entry pending this long belonged to a consumer that died
CLAIM_EVERY_S = 10.0
ATTEMPTS_ALONE = 2  # an entry that fails this many times on its own is a dead letter
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 5.0

Entry = tuple[bytes, dict[bytes, bytes]]


class DatabaseUnavailable(Exception):
    """The database does not answer: no entry is to blame, and none is acknowledged."""


@dataclass
class DrainStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    claimed: int = 0
    redis_errors: int = 0


@dataclass
class _Failed:
    entry_id: bytes
    fields: dict[bytes, bytes]
    error: str
    attempts: int
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Backoff:
    """Doubling waits between retries of a failing dependency, reset by the first success."""

    delay: float = 0.0

    def next(self) -> float:
        self.delay = min(BACKOFF_MAX_S, self.delay * 2 if self.delay else BACKOFF_FIRST_S)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def group_ensure(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def batch_process(client: redis.Redis, stream: str, entries: list[Entry], stats: DrainStats) -> None:
    """Store one batch, set aside what cannot be stored, and acknowledge the whole batch.
    Raises DatabaseUnavailable (acknowledging nothing) if the database stops answering."""
    if not entries:
        return
    readable: list[tuple[Entry, dict[str, Any]]] = []
    failed: list[_Failed] = []
    for entry_id, fields in entries:
        try:
            record = orjson.loads(fields[b"r"])
            if not isinstance(record, dict):
                raise TypeError(f"a record is a JSON object, not {type(record).__name__}")
        except (KeyError, orjson.JSONDecodeError, TypeError) as exc:
            # Reading it again gives the same answer: one attempt is enough.
            failed.append(_Failed(entry_id, fields, f"unreadable entry: {exc!r}", attempts=1))
        else:
            readable.append(((entry_id, fields), record))
    to_enqueue: dict[str, str] = {}
    _store_isolating(readable, stats=stats, failed=failed, to_enqueue=to_enqueue, failed_once=False)
    outbox.issues_enqueue(to_enqueue=to_enqueue)
    if failed:
        dead_letters_write(stream=stream, failed=failed)
    pipe = client.pipeline(transaction=True)
    ids = [entry_id for entry_id, _ in entries]
    pipe.xack(stream, GROUP, *ids)
    pipe.xdel(stream, *ids)
    pipe.execute()
    stats.batches += 1
    stats.dead += len(failed)


def _store_isolating(
    items: list[tuple[Entry, dict[str, Any]]],
    *,
    stats: DrainStats,
    failed: list[_Failed],
    to_enqueue: dict[str, str],
    failed_once: bool,
) -> None:
    """Store `items` in one transaction; if that fails, in halves, down to single entries."""
    if not items:
        return
    try:
        result = store.reports_store(records=[record for _, record in items])
    except Exception as exc:  # noqa: BLE001 - whatever an entry makes fail, it must not stop the others
        if not _database_answers():
            raise DatabaseUnavailable(str(exc)) from exc
        if len(items) == 1 and failed_once:
            (entry_id, fields), record = items[0]
            logger.error("stream entry failed twice on its own; dead-lettered", extra={"entry": entry_id.decode()})
            failed.append(_Failed(entry_id, fields, f"{type(exc).__name__}: {exc}", ATTEMPTS_ALONE, record))
            return
        if len(items) == 1:
            _store_isolating(items, stats=stats, failed=failed, to_enqueue=to_enqueue, failed_once=True)
            return
        logger.warning("batch failed; storing it in halves", extra={"size": len(items), "error": str(exc)})
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            _store_isolating(part, stats=stats, failed=failed, to_enqueue=to_enqueue, failed_once=False)
        return
    stats.stored += result.stored
    stats.duplicates += result.duplicates
    to_enqueue.update(result.to_enqueue)


def _database_answers() -> bool:
    """After a failed write: is the database there (so the data is to blame)?"""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        if not connection.in_atomic_block:
            connection.close()  # a connection the server dropped: the next attempt opens a new one
        return False


def dead_letters_write(*, stream: str, failed: list[_Failed]) -> None:
    """Keep each entry that could not be stored, whole, with why."""
    claimed = {_int(f.record.get("project_id")) for f in failed} - {None}
    existing = set(Project.objects.filter(id__in=claimed).values_list("id", flat=True))  # may have been deleted
    rows = []
    for f in failed:
        project_id = _int(f.record.get("project_id"))
        rows.append(
            IngestDeadLetter(
                entry_id=f.entry_id.decode(),
                stream=stream,
                project_id=project_id if project_id in existing else None,
                event_id=_uuid(f.record.get("event_id")),
                raw=_raw(f.fields),
                error=f.error.replace("\x00", "\\x00")[:10_000],
                attempts=f.attempts,
            )
        )
    IngestDeadLetter.objects.bulk_create(rows)


def dead_letter_store_again(*, dead_letter: IngestDeadLetter) -> bool:
    """Store a dead letter's record now (the cause was fixed); False if it still fails. Storing is
    idempotent, so a letter stored twice counts once."""
    try:
        record = orjson.loads(dead_letter.raw)
        with transaction.atomic():
            result = store.reports_store(records=[record])
            stored = IngestDeadLetter.objects.filter(id=dead_letter.id, stored_at__isnull=True).update(
                stored_at=timezone.now()
            )
    except Exception as exc:  # noqa: BLE001 - reported to the owner, who retried it by hand
        logger.warning("dead letter still fails", extra={"dead_letter": dead_letter.id, "error": str(exc)})
        return False
    if stored:
        outbox.issues_enqueue(to_enqueue=result.to_enqueue)
    return True


def _raw(fields: dict[bytes, bytes]) -> bytes:
    """The record's JSON as it was in the stream; an entry without one, all its fields as JSON."""
    if b"r" in fields:
        return fields[b"r"]
    return orjson.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def stale_claim(client: redis.Redis, stream: str, consumer: str, *, min_idle_ms: int, count: int) -> list:
    """Take over entries a dead consumer read but never acknowledged."""
    claimed: list = []
    cursor = "0-0"
    while True:
        cursor, entries, *_ = client.xautoclaim(stream, GROUP, consumer, min_idle_ms, start_id=cursor, count=count)
        claimed.extend(e for e in entries if e[1] is not None)
        if cursor in (b"0-0", "0-0") or len(claimed) >= count:
            return claimed


def drain(
    *,
    stop: threading.Event,
    consumer: str | None = None,
    batch: int | None = None,
    block_ms: int = 1000,
    claim_idle_ms: int = CLAIM_IDLE_MS,
    until_empty: bool = False,
) -> DrainStats:
    """Consume the stream until `stop` is set (or, with until_empty, until nothing is left).
    Redis and database failures are waited out, never raised."""
    client = redis_client.get().client
    stream = settings.KAIZEN_INGEST_STREAM
    consumer = consumer or consumer_name()
    batch = batch or settings.KAIZEN_INGEST_BATCH
    stats = DrainStats()
    backoff = _Backoff()
    group_ready = False
    own_pending = True  # first re-read what this consumer name was given and never acknowledged
    next_claim = 0.0
    while not stop.is_set():
        try:
            if not group_ready:
                group_ensure(client, stream)
                group_ready = True
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY_S
                claimed = stale_claim(client, stream, consumer, min_idle_ms=claim_idle_ms, count=batch)
                if claimed:
                    stats.claimed += len(claimed)
                    logger.warning("re-claimed entries of a consumer that stopped", extra={"count": len(claimed)})
                    batch_process(client, stream, claimed, stats)
                    backoff.reset()
                    continue
            start = "0" if own_pending else ">"
            block = None if own_pending or until_empty else block_ms
            reply = client.xreadgroup(GROUP, consumer, {stream: start}, count=batch, block=block)
            entries = reply[0][1] if reply else []
            if own_pending and not entries:
                own_pending = False
                continue
            if not entries:
                if until_empty:
                    break
                continue
            batch_process(client, stream, entries, stats)
            backoff.reset()
        except (DatabaseUnavailable, DatabaseError) as exc:
            # Entries stay pending; re-read them after the database answers again.
            wait = backoff.next()
            logger.error("database unreachable; batch left pending", extra={"error": str(exc), "retry_in_s": wait})
            close_old_connections()
            own_pending = True
            stop.wait(wait)
        except redis.RedisError as exc:
            stats.redis_errors += 1
            # A lost connection may be a restart, and NOGROUP says a Redis restarted without
            # persistence lost the group (and the stream): recreate the group either way.
            group_ready = False
            own_pending = True
            wait = backoff.next()
            logger.warning("Redis failed; retrying", extra={"error": str(exc), "retry_in_s": wait})
            stop.wait(wait)
        except Exception:
            # A bug must not stop storage for every project: logged, waited on, retried.
            wait = backoff.next()
            logger.exception("consumer error; retrying", extra={"retry_in_s": wait})
            own_pending = True
            stop.wait(wait)
    return stats
