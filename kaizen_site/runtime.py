"""Which backing services this process runs on, decided once at start-up.

The embedded default must run on a bare machine: Redis is used when `REDIS_URL` answers,
otherwise the broker is a folder under `var/` and ingest writes straight to the database.
The choice is logged in one line so an operator never has to guess.
"""

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger("kaizen.runtime")


@dataclass(frozen=True)
class Runtime:
    redis_url: str  # "" when Redis is not used
    broker_url: str
    ingest_mode: str  # "stream": Redis stream + consumer; "direct": one transaction per report

    def describe(self) -> str:
        return f"broker={_redact(self.broker_url)} redis={_redact(self.redis_url) or 'off'} ingest={self.ingest_mode}"


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(parsed.password, "***")
    return url


def redis_reachable(url: str, timeout: float = 0.3) -> bool:
    """A TCP connect is enough: we only want to know whether to plan on Redis."""
    if not url:
        return False
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        return False
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout):
            return True
    except OSError:
        return False


def detect(*, redis_url: str, broker_url: str, ingest_mode: str, var_dir: Path) -> Runtime:
    has_redis = redis_reachable(redis_url)
    if not has_redis and redis_url:
        logger.warning("Redis at %s is not reachable; running on the embedded defaults", _redact(redis_url))
    if not broker_url:
        broker_url = redis_url if has_redis else "filesystem://"
    if ingest_mode not in ("stream", "direct"):
        ingest_mode = "stream" if has_redis else "direct"
    if ingest_mode == "stream" and not has_redis:
        raise RuntimeError("KAIZEN_INGEST_MODE=stream needs a reachable REDIS_URL")
    return Runtime(redis_url=redis_url if has_redis else "", broker_url=broker_url, ingest_mode=ingest_mode)
