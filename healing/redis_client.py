"""The one Redis connection pool Kaizen's own code uses (Django's cache and Celery keep theirs)."""

from collections.abc import Sequence
from functools import cache

import redis
from django.conf import settings


class KaizenRedis:
    def __init__(self, url: str):
        # redis-py pools notice a fork and reconnect, so this survives gunicorn --preload and prefork.
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)

    def xadd_many(self, stream: str, payloads: Sequence[bytes]) -> None:
        if len(payloads) == 1:
            self.client.xadd(stream, {"r": payloads[0]})
            return
        pipe = self.client.pipeline(transaction=True)
        for payload in payloads:
            pipe.xadd(stream, {"r": payload})
        pipe.execute()

    def incr_window(self, key: str, count: int, *, ttl: int) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.incrby(key, count)
        pipe.expire(key, ttl, nx=True)
        used, _ = pipe.execute()
        return used


@cache
def _for(url: str) -> KaizenRedis:
    return KaizenRedis(url)


def get() -> KaizenRedis:
    if not settings.REDIS_URL:
        raise RuntimeError("Redis is not configured (REDIS_URL unreachable or empty)")
    return _for(settings.REDIS_URL)
