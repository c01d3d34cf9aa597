"""Draining the Redis ingest stream into the database.

A consumer group gives each entry to one consumer; an entry is acknowledged (and deleted) only
after the batch holding it is committed, so a consumer killed mid-batch leaves its entries
pending, and they are re-claimed by whichever consumer runs next (XAUTOCLAIM). Storing is
idempotent by event id, so a batch stored twice counts once.
https://redis.io/docs/latest/develop/data-types/streams/#consumer-groups
"""

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import orjson
import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from . import outbox, redis_client, store

logger = logging.getLogger("kaizen.stream")

GROUP = "kaizen-store"
DEAD_LETTER_SUFFIX = ":dead"
CLAIM_IDLE_MS = 30_000  # an entry pending this long belonged to a consumer that died
CLAIM_EVERY_S = 10.0


@dataclass
class DrainStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    claimed: int = 0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def group_ensure(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def batch_process(client: redis.Redis, stream: str, entries: list[tuple[bytes, dict]], stats: DrainStats) -> None:
    """Store one batch and acknowledge it. Raises (without acknowledging) if the database fails."""
    if not entries:
        return
    records, ids, dead = [], [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        try:
            records.append(orjson.loads(fields[b"r"]))
        except (KeyError, orjson.JSONDecodeError):
            dead.append((entry_id, fields))
    result = store.reports_store(records=records)
    outbox.issues_enqueue(to_enqueue=result.to_enqueue)
    pipe = client.pipeline(transaction=True)
    for entry_id, fields in dead:  # kept for inspection, never silently dropped
        pipe.xadd(stream + DEAD_LETTER_SUFFIX, {"id": entry_id, **fields})
    pipe.xack(stream, GROUP, *ids)
    pipe.xdel(stream, *ids)
    pipe.execute()
    stats.batches += 1
    stats.stored += result.stored
    stats.duplicates += result.duplicates
    stats.dead += len(dead)
    if dead:
        logger.error("unreadable stream entries moved to the dead-letter stream", extra={"count": len(dead)})


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
    """Consume the stream until `stop` is set (or, with until_empty, until nothing is left)."""
    client = redis_client.get().client
    stream = settings.KAIZEN_INGEST_STREAM
    consumer = consumer or consumer_name()
    batch = batch or settings.KAIZEN_INGEST_BATCH
    stats = DrainStats()
    group_ensure(client, stream)
    own_pending = True  # first re-read what this consumer name was given and never acknowledged
    next_claim = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY_S
                claimed = stale_claim(client, stream, consumer, min_idle_ms=claim_idle_ms, count=batch)
                if claimed:
                    stats.claimed += len(claimed)
                    logger.warning("re-claimed entries of a consumer that stopped", extra={"count": len(claimed)})
                    batch_process(client, stream, claimed, stats)
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
        except DatabaseError:
            # Entries stay pending; re-read them after the database answers again.
            logger.exception("database write failed; batch left pending, retrying")
            close_old_connections()
            own_pending = True
            stop.wait(1.0)
        except redis.ConnectionError:
            logger.exception("Redis unreachable; retrying")
            stop.wait(1.0)
    return stats
