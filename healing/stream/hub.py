"""One Redis subscriber per stream process, fanning wake-ups out to the streams it serves.

A thousand open streams must not mean a thousand Redis connections: the hub holds one pub/sub
connection, reads each PUBLISH of healing.stream.fanout (a chunk of stored events), and puts
every event on the queue of each stream open for its session (several tabs: several queues).
Whenever the hub (re)subscribes, or a slow stream's queue overflows, the stream is told to
resync: it reads what it missed from the database, which stays the source of truth.
"""

import asyncio
import logging
from dataclasses import dataclass, field

import orjson
import redis
import redis.asyncio as aioredis

from healing.stream.fanout import CHANNEL

logger = logging.getLogger("kaizen.stream")

QUEUE_SIZE = 256  # events waiting for one stream; past it the stream rereads the database
RESYNC = object()  # a queue item: "read the database: you may have missed something"
RECONNECT_DELAYS = (0.5, 1, 2, 5)
CLIENT_NAME = "kaizen-stream-hub"  # as CLIENT LIST shows it: one per stream process


@dataclass(eq=False)
class Subscription:
    session_id: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE))

    def offer(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Drop what is queued: the stream reads it all back from the database.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class Hub:
    def __init__(self, *, url: str):
        self.url = url
        self.subscriptions: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    def subscribe(self, session_id: str) -> Subscription:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kaizen-stream-hub")
        subscription = Subscription(session_id=session_id)
        self.subscriptions.setdefault(session_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self.subscriptions.get(subscription.session_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self.subscriptions[subscription.session_id]

    def dispatch(self, data: bytes) -> None:
        try:
            events = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("unreadable stream wake-up dropped")
            return
        for event in events:
            for subscription in self.subscriptions.get(event.get("s"), ()):
                subscription.offer(event)

    def _resync_all(self) -> None:
        for subscribers in self.subscriptions.values():
            for subscription in subscribers:
                subscription.offer(RESYNC)

    async def _run(self) -> None:
        attempt = 0
        while True:
            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=30,
                                             client_name=CLIENT_NAME)  # fmt: skip
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    attempt = 0
                    self.ready.set()
                    # Events published while nobody listened are in the database only.
                    self._resync_all()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning("stream hub lost Redis; reconnecting in %ss", delay, extra={"error": str(exc)})
                await asyncio.sleep(delay)
            finally:
                await client.aclose()


_hubs: dict[tuple[int, str], Hub] = {}


def hub_for(url: str) -> Hub:
    """This event loop's hub (one per process under uvicorn; tests may run several loops)."""
    key = (id(asyncio.get_running_loop()), url)
    hub = _hubs.get(key)
    if hub is None:
        hub = _hubs[key] = Hub(url=url)
    return hub
