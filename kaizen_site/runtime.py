"""Which backing services this process runs on, and the address it is reached at, decided once
at start-up.

The embedded default must run on a bare machine: Redis is used when `REDIS_URL` answers,
otherwise the broker is a folder under `var/` and ingest writes straight to the database.
The choice is logged in one line so an operator never has to guess.

`python -m kaizen_site.runtime` prints the port of `KAIZEN_PUBLIC_URL`: `make run` starts honcho
there, so the web server listens at the address everyone is told. `... stream-port` prints the
port of `KAIZEN_STREAM_URL`, where the Procfile starts the ASGI server of the users' event streams.
`... concurrency` prints how many processes of each Procfile line to run (honcho's `-c`).
"""

import logging
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse, urlsplit

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


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def detect(*, redis_url: str, broker_url: str, ingest_mode: str) -> Runtime:
    """`auto` takes Redis when it answers now, else the embedded defaults. `stream` names a
    deployment that runs on Redis: a Redis that is down at this moment (a process restarted during
    an outage) is waited out like an outage at any other time (the web server writes reports
    straight to the database, the consumer retries), rather than refusing to start."""
    has_redis = redis_reachable(redis_url)
    if ingest_mode == "stream":
        if urlparse(redis_url).scheme not in ("redis", "rediss"):
            raise RuntimeError("KAIZEN_INGEST_MODE=stream needs REDIS_URL (redis://…)")
        if not has_redis:
            logger.warning("Redis at %s is not reachable yet; waiting for it (KAIZEN_INGEST_MODE=stream)",
                           _redact(redis_url))  # fmt: skip
        return Runtime(redis_url=redis_url, broker_url=broker_url or redis_url, ingest_mode="stream")
    if not has_redis and redis_url:
        logger.warning("Redis at %s is not reachable; running on the embedded defaults", _redact(redis_url))
    if not broker_url:
        broker_url = redis_url if has_redis else "filesystem://"
    if ingest_mode != "direct":
        ingest_mode = "stream" if has_redis else "direct"
    return Runtime(redis_url=redis_url if has_redis else "", broker_url=broker_url, ingest_mode=ingest_mode)


# --- The public address -----------------------------------------------------------------------

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
_LOOPBACK_ALIASES = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}


def public_url(raw: str) -> str:
    """`KAIZEN_PUBLIC_URL` checked and without its trailing slash; empty means the default.
    Refuses anything a browser could not open, so a typo fails at start-up, not at the first replay."""
    url = (raw or DEFAULT_PUBLIC_URL).strip().rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError as exc:
        raise RuntimeError(f"KAIZEN_PUBLIC_URL={raw!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise RuntimeError(
            f"KAIZEN_PUBLIC_URL={raw!r} is not an http(s) address such as http://127.0.0.1:8000 or https://kaizen.example.com"
        )
    return url


def public_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def public_origins(url: str) -> list[str]:
    """The browser origins a page served at `url` reports from: its own, and on this machine the
    other loopback name too (a newcomer types localhost as often as 127.0.0.1)."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    alias = _LOOPBACK_ALIASES.get(parts.hostname or "")
    if alias is None:
        return [origin]
    port = f":{parts.port}" if parts.port else ""
    return [origin, f"{parts.scheme}://{alias}{port}"]


def stream_url(raw: str, *, public: str) -> str:
    """`KAIZEN_STREAM_URL`, checked; empty means the public URL's host with the next port (where
    `make run` starts the ASGI server). Equal to `public` when a proxy routes the stream there."""
    if raw:
        try:
            return public_url(raw)
        except RuntimeError as exc:
            raise RuntimeError(str(exc).replace("KAIZEN_PUBLIC_URL", "KAIZEN_STREAM_URL")) from exc
    parts = urlsplit(public)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{parts.scheme}://{host}:{public_port(public) + 1}"


# --- How many processes of each Procfile line ----------------------------------------------------

# Two `critical` processes: one Python process runs Python on one core at a time. When the ingest
# load pushes 50 issues over their escalation threshold in the same batch, their pipelines and
# alerts keep one process busy for over a second, and a new P0 published then waited for it
# (bench/queue_isolation.py: published → started p99 878–1,414 ms with one process of 32 threads,
# 68–757 ms with two of 16).
DEFAULT_CRITICAL_PROCESSES = 2


def process_counts(*, broker_url: str) -> dict[str, int]:
    """Procfile line → how many processes of it `make run` starts (`CRITICAL_PROCESSES`); on a
    platform, the scale of that process type. Lines not named run once.

    On the embedded broker, one: kombu's filesystem transport claims a message by moving its file
    to the temporary folder, which is a copy when that is another file system, so two consumers of
    one queue could both take a message."""
    raw = os.environ.get("CRITICAL_PROCESSES", "") or str(DEFAULT_CRITICAL_PROCESSES)
    if not raw.isdigit() or int(raw) < 1:
        raise RuntimeError(f"CRITICAL_PROCESSES={raw!r} is not a positive number of processes")
    return {"critical": 1 if broker_url.startswith("filesystem://") else int(raw)}


def from_environment() -> Runtime:
    """`detect` on this process's environment, as the settings call it."""
    return detect(
        redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        broker_url=os.environ.get("CELERY_BROKER_URL", ""),
        ingest_mode=os.environ.get("KAIZEN_INGEST_MODE", "auto"),
    )


def _main(argv: list[str]) -> None:
    """`python -m kaizen_site.runtime` prints the public port; `... stream-port` the stream's;
    `... concurrency` the process counts in honcho's `-c` form (critical=2)."""
    if argv[:1] == ["concurrency"]:
        counts = process_counts(broker_url=from_environment().broker_url)
        print(",".join(f"{name}={count}" for name, count in counts.items()))
        return
    public = public_url(os.environ.get("KAIZEN_PUBLIC_URL", ""))
    if argv[:1] == ["stream-port"]:
        print(public_port(stream_url(os.environ.get("KAIZEN_STREAM_URL", ""), public=public)))
    elif argv[:1] == ["stream-url"]:
        print(stream_url(os.environ.get("KAIZEN_STREAM_URL", ""), public=public))
    else:
        print(public_port(public))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
