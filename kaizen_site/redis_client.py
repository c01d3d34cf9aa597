"""The Redis client Kaizen's own code uses (Django's cache and Celery keep theirs): one connection
pool per process, and for the ingest path's append a connection per thread (own_connection)."""

import os
import threading
from collections.abc import Sequence
from functools import cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

# Take the project's quota and append the reports in one atomic round trip: the ingest path's
# only call to Redis. Nothing is appended when the reports would go over the quota.
# KEYS: quota counter, stream. ARGV: quota, counter ttl, then one payload per report.
APPEND_WITHIN_QUOTA = """
local n = #ARGV - 2
local used = redis.call('INCRBY', KEYS[1], n)
if used == n then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if used > tonumber(ARGV[1]) then return 0 end
for i = 3, #ARGV do redis.call('XADD', KEYS[2], '*', 'r', ARGV[i]) end
return 1
"""


OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 30}


class KaizenRedis:
    def __init__(self, url: str):
        # redis-py pools notice a fork and reconnect, so this survives gunicorn --preload and prefork.
        self.url = url
        self.client = redis.Redis.from_url(url, **OPTIONS)
        self._append_within_quota = self.client.register_script(APPEND_WITHIN_QUOTA)
        self._own = threading.local()

    def own_connection(self) -> redis.Redis:
        """A client on a connection of this thread's own, for the ingest path's one call: a command
        through the shared pool also pays for its lock, its bookkeeping and a check that the socket
        holds nothing unread, about 40 % of that call's CPU. Made again in a forked child."""
        own = getattr(self._own, "client", None)
        if own is None or self._own.pid != os.getpid():
            # A pooled command checks its connection before using it; this one finds a dead one
            # (Redis restarted) by failing, and is sent once more on a new connection (not after a
            # timeout: that would double the wait). Sent twice after all, a report is stored once:
            # the store ignores an event id it already has.
            once_more = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            own = self._own.client = redis.Redis.from_url(
                self.url, single_connection_client=True, retry=once_more, **OPTIONS
            )
            self._own.pid = os.getpid()
        return own

    def append_within_quota(
        self, *, stream: str, quota_key: str, quota: int, ttl: int, payloads: Sequence[bytes]
    ) -> bool:
        """Returns False (and appends nothing) when the payloads would exceed the quota."""
        keys, args = [quota_key, stream], [quota, ttl, *payloads]
        return bool(self._append_within_quota(keys=keys, args=args, client=self.own_connection()))


@cache
def _for(url: str) -> KaizenRedis:
    return KaizenRedis(url)


def get() -> KaizenRedis:
    if not settings.REDIS_URL:
        raise RuntimeError("Redis is not configured (REDIS_URL unreachable or empty)")
    return _for(settings.REDIS_URL)
