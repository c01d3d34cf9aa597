"""CPU priority of a Celery worker: one that serves only background queues yields the CPU.

Queues keep a P3 flood from taking an urgent worker's process, but both groups still share the
machine's cores: busy background workers would take their share of CPU from the P0 work, the web
server and the ingest consumer. A worker whose every queue is background work lowers its own
priority at start, before its pool's processes are forked (they inherit it).

Linux shares CPU time between sessions first ("autogroups", on by default on desktop and server
kernels), then between processes by nice value within a session. honcho starts every Procfile
line in a session of its own, so a nice value alone would change nothing: a worker that leads its
session lowers the session's weight too. One started from a shell shares the shell's session and
leaves it alone.
"""

import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger("kaizen.workers")

BACKGROUND_QUEUES = frozenset({"P2", "P3", "research"})
BACKGROUND_NICE = 10
AUTOGROUP = Path("/proc/self/autogroup")


def background_only(queues: Iterable[str]) -> bool:
    names = set(queues)
    return bool(names) and names <= BACKGROUND_QUEUES


def session_nice() -> int | None:
    """This session's nice value ("/autogroup-12 nice 0"), or None where autogroups can't be read.

    Some sandboxes show the file but leave it empty."""
    try:
        fields = AUTOGROUP.read_text().split()
        return int(fields[-1]) if fields else None
    except (OSError, ValueError):
        return None


def cpu_yield(*, nice: int = BACKGROUND_NICE) -> list[str]:
    """Lower this process's CPU priority to `nice` (never raise it); returns what was changed."""
    changed = []
    if os.getpriority(os.PRIO_PROCESS, 0) < nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        changed.append(f"nice {nice}")
    if os.getsid(0) == os.getpid() and session_nice() is not None:
        try:
            AUTOGROUP.write_text(str(nice))
            changed.append(f"session nice {nice}")
        except OSError as exc:  # a kernel without autogroups, or a read-only /proc
            logger.info("session CPU weight unchanged", extra={"error": str(exc)})
    return changed


def worker_started(*, queues: Iterable[str]) -> None:
    """At a worker's start (celeryd_after_setup): background-only workers yield the CPU."""
    queues = sorted(queues)
    if background_only(queues):
        logger.info("background worker yields the CPU", extra={"queues": queues, "changed": cpu_yield()})
