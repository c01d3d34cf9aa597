"""Per-process caches of hot reads (project keys, classification rules, error patterns, CORS
origins): cachetools' TTLCache behind one helper, so each is bounded, expires by itself, and is
safe to share between a process's threads.

In-process on purpose: these reads sit on the ingest path, where even a Redis round trip per
report is too much, and an edit reaching every process within the TTL is soon enough (the
console also clears its own process's copy on commit).
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """Values loaded on a miss and kept `ttl` seconds. `ttl` may be a callable read on every
    look-up (a setting a test or an operator changes); a new value takes effect at once."""

    def __init__(self, *, ttl: float | Callable[[], float], maxsize: int = 1):
        self._ttl = ttl if callable(ttl) else (lambda: ttl)
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self.timer: Callable[[], float] = time.monotonic  # the clock a test may replace
        self._cache = self._new(self._ttl())

    def _new(self, ttl: float) -> TTLCache:
        return TTLCache(maxsize=self._maxsize, ttl=ttl, timer=lambda: self.timer())

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        ttl = self._ttl()
        with self._lock:
            if self._cache.ttl != ttl:
                self._cache = self._new(ttl)
            try:
                return self._cache[key]
            except KeyError:
                pass
        # Loaded outside the lock: a database read must not serialize the process's threads.
        value = load()
        with self._lock:
            self._cache[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
