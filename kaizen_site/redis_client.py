"""The one Redis connection pool Kaizen's own code uses (Django's cache and Celery keep theirs)."""

from collections.abc import Sequence
from functools import cache

import redis
from django.conf import settings

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


class KaizenRedis:
    def __init__(self, url: str):
        # redis-py pools notice a fork and reconnect, so this survives gunicorn --preload and prefork.
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        self._append_within_quota = self.client.register_script(APPEND_WITHIN_QUOTA)

    def append_within_quota(
        self, *, stream: str, quota_key: str, quota: int, ttl: int, payloads: Sequence[bytes]
    ) -> bool:
        """Returns False (and appends nothing) when the payloads would exceed the quota."""
        return bool(self._append_within_quota(keys=[quota_key, stream], args=[quota, ttl, *payloads]))


@cache
def _for(url: str) -> KaizenRedis:
    return KaizenRedis(url)


def get() -> KaizenRedis:
    if not settings.REDIS_URL:
        raise RuntimeError("Redis is not configured (REDIS_URL unreachable or empty)")
    return _for(settings.REDIS_URL)
