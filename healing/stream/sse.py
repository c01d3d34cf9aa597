"""`GET /api/v1/sessions/<session_id>/events`: the session's Server-Sent Events.

Served by the ASGI process (uvicorn, the Procfile's `stream`): an async view whose response is an
async iterator, so an open stream costs a coroutine and a queue, not a thread. The database is the
source of truth: a browser reconnecting with `Last-Event-ID` gets exactly the events after that
id; Redis pub/sub (one subscriber per process, healing.stream.hub) wakes the streams at once and
carries the events, so an event reaches an open stream without a query. Without Redis each
stream reads the database every KAIZEN_STREAM_POLL_SECONDS. A "Fixed" status waits, and what
follows it with it, until its fix's flag has reached every process (fanout.status_send_after).

Under the WSGI server (the API's granian) this path answers 421 with the stream's address
instead: a stream there would hold a worker thread for minutes.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import orjson
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone

from healing.models import Project, SessionEvent, UserSession
from healing.stream.fanout import status_send_after
from healing.stream.hub import RESYNC, hub_for
from healing.stream.sessions import EVENTS_PATH
from healing.stream.tokens import TokenError, token_check
from kaizen_site.process_cache import ProcessCache

logger = logging.getLogger("kaizen.stream")

BACKLOG_LIMIT = 500  # events sent per database read; a longer backlog is read in turns
SEEN_IDS = 512  # ids a stream remembers, so an event both read and woken for goes out once

_origins: ProcessCache[frozenset[str]] = ProcessCache(ttl=10.0, maxsize=4096)
T = TypeVar("T")
# The streams' database reads run on a few threads of their own, each keeping its connection.
# Not Django's sync_to_async: under ASGI each request gets a thread of its own for it, and with it
# a database connection held for as long as the stream stays open (1,000 streams, 1,000 connections).
_db_threads = ThreadPoolExecutor(max_workers=settings.KAIZEN_STREAM_DB_THREADS, thread_name_prefix="stream-db")


def _db_call(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        connection.close()  # a kept connection the database dropped (restart, idle timeout): once more
        return fn(*args)


async def db_read(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_db_threads, partial(_db_call, fn, *args))


def _project_origins(project_id: int) -> frozenset[str]:
    def load() -> frozenset[str]:
        row = Project.objects.filter(pk=project_id, is_active=True).values_list("allowed_origins", flat=True).first()
        return frozenset(o.rstrip("/") for o in row or [])

    return _origins.get(project_id, load)


def _events_after(session_id: str, last_id: int) -> list[tuple[int, str, Any]]:
    rows = SessionEvent.objects.filter(session__session_id=session_id, id__gt=last_id).order_by("id")
    return list(rows.values_list("id", "kind", "payload")[:BACKLOG_LIMIT])


def _session_touch(session_id: str) -> None:
    UserSession.objects.filter(session_id=session_id).update(last_seen_at=timezone.now())


def sse_format(*, event_id: int, kind: str, data: Any) -> bytes:
    # orjson writes one line (no raw newlines in JSON), as an SSE `data:` field needs.
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), orjson.dumps(data))


def _chunk(*, event_id: int, kind: str, data: Any) -> tuple[float, bytes]:
    """An event's bytes, with the time before which they must not be sent (fanout.status_send_after)."""
    return status_send_after(kind=kind, payload=data), sse_format(event_id=event_id, kind=kind, data=data)


async def _held(send_after: float) -> None:
    if (wait := send_after - time.time()) > 0:
        await asyncio.sleep(wait)


HEARTBEAT = b": keep-alive\n\n"
TOUCH_SECONDS = 60


async def event_stream(*, session_id: str, last_id: int) -> AsyncIterator[bytes]:
    """The stream's bytes: `retry:` first, the backlog after `last_id`, then each event as it comes,
    a heartbeat comment when idle, and the end after KAIZEN_STREAM_MAX_SECONDS."""
    polling = not settings.REDIS_URL
    subscription = None if polling else hub_for(settings.REDIS_URL).subscribe(session_id)
    hub = None if polling else hub_for(settings.REDIS_URL)
    seen: deque[int] = deque(maxlen=SEEN_IDS)
    started = last_write = last_read = time.monotonic()
    read_every = settings.KAIZEN_STREAM_POLL_SECONDS if polling else settings.KAIZEN_STREAM_RESYNC_SECONDS
    heartbeat = settings.KAIZEN_STREAM_HEARTBEAT_SECONDS

    async def read() -> list[tuple[float, bytes]]:
        nonlocal last_id, last_read
        chunks = []
        rows = await db_read(_events_after, session_id, last_id)
        last_read = time.monotonic()
        for event_id, kind, payload in rows:
            if event_id not in seen:
                seen.append(event_id)
                chunks.append(_chunk(event_id=event_id, kind=kind, data=payload))
            last_id = max(last_id, event_id)
        return chunks

    # An open stream keeps its session "active now" (the console's window is a few minutes).
    touched = time.monotonic()
    await db_read(_session_touch, session_id)
    try:
        yield b"retry: %d\n\n" % settings.KAIZEN_STREAM_RETRY_MS
        # Subscribed before this read: an event committed in between is in one or the other.
        for send_after, chunk in await read():
            await _held(send_after)
            yield chunk
        last_write = time.monotonic()
        end = started + settings.KAIZEN_STREAM_MAX_SECONDS
        while (now := time.monotonic()) < end:
            timeout = max(0.0, min(last_write + heartbeat, last_read + read_every, end) - now)
            item = None
            if subscription is not None:
                try:
                    item = await asyncio.wait_for(subscription.queue.get(), timeout)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(timeout)
            chunks: list[tuple[float, bytes]] = []
            if item is RESYNC or time.monotonic() >= last_read + read_every:
                chunks = await read()
            elif item is not None and item["id"] not in seen:
                # Sent even when older than the last id: a transaction that took an earlier id
                # may commit after a later one.
                seen.append(item["id"])
                last_id = max(last_id, item["id"])
                chunks = [_chunk(event_id=item["id"], kind=item["k"], data=item["d"])]
            if not chunks and time.monotonic() >= last_write + heartbeat:
                chunks = [(0.0, HEARTBEAT)]
            for send_after, chunk in chunks:  # in order: what follows a held event waits with it
                await _held(send_after)
                yield chunk
            if chunks:
                last_write = time.monotonic()
            if last_write - touched >= TOUCH_SECONDS:
                touched = time.monotonic()
                await db_read(_session_touch, session_id)
    finally:
        if subscription is not None and hub is not None:
            hub.unsubscribe(subscription)


def _error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail, **extra}, status=status)


def _cors(response: HttpResponse, *, origin: str) -> HttpResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    return response


async def session_events(request, session_id: str) -> HttpResponse:
    origin = (request.headers.get("Origin") or "").rstrip("/")
    if not isinstance(request, ASGIRequest):
        stream_url = settings.KAIZEN_STREAM_URL + EVENTS_PATH.format(session_id=session_id)
        return _error(421, "use_stream_url", f"Event streams are served at {stream_url}.", stream_url=stream_url)
    if request.method == "OPTIONS":
        # A reconnecting EventSource may send Last-Event-ID, which is not a "simple" header.
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response["Access-Control-Allow-Headers"] = "last-event-id, cache-control"
        response["Access-Control-Max-Age"] = "86400"
        return _cors(response, origin=origin)
    if request.method != "GET":
        return _error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
    try:
        project_id = token_check(token=request.GET.get("token", ""), session_id=session_id)
    except TokenError as exc:
        logger.info("stream refused", extra={"error": exc.code, "status": exc.status})
        # The origin is echoed on a refusal too, so the page can read why and refresh its token.
        return _cors(_error(exc.status, exc.code, exc.detail), origin=origin)
    allowed = await db_read(_project_origins, project_id)
    if origin and origin not in allowed:
        return _error(403, "origin_not_allowed", f"Origin {origin} is not allowed for this project.")
    raw_last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0"
    try:
        last_id = int(raw_last)
    except ValueError:
        return _cors(_error(400, "invalid_last_event_id", "Last-Event-ID must be an event id."), origin=origin)
    response = StreamingHttpResponse(event_stream(session_id=session_id, last_id=max(last_id, 0)),
                                     content_type="text/event-stream; charset=utf-8")  # fmt: skip
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return _cors(response, origin=origin)
