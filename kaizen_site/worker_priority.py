"""CPU priority of a Celery worker: one that serves only background queues yields the CPU, and
one that serves only P0 claims it where the system allows.

Queues keep a P3 flood from taking an urgent worker's process, but every group still shares the
machine's cores: busy background workers would take their share of CPU from the P0 work, the web
server and the ingest consumer. A worker whose every queue is background work lowers its own
priority at start, before its pool's processes or threads are started (they inherit it).

Yielding is not enough when the web server and the ingest consumer keep the cores busy: P0 work
then waits for its share like everything else (bench/queue_isolation.py measured a P0 task
starting ~0.4 s after it was published, against a few milliseconds at a higher priority). A
worker whose every queue is P0 raises its priority. Only a privileged process may (root, or
CAP_SYS_NICE, or an RLIMIT_NICE such as systemd's LimitNICE=); elsewhere the worker says so at
start and runs at the normal priority.

Linux shares CPU time between sessions first ("autogroups", on by default on desktop and server
kernels), then between processes by nice value within a session. honcho starts every Procfile
line in a session of its own, so a nice value alone would change nothing: a worker that leads its
session sets the session's weight too (the Procfile's `exec` makes the worker, not honcho's shell,
the leader). One started from a shell shares the shell's session and leaves it alone.
"""

import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger("kaizen.workers")

BACKGROUND_QUEUES = frozenset({"P2", "P3", "research"})
BACKGROUND_NICE = 10
CRITICAL_QUEUES = frozenset({"P0"})
# 9× the CPU weight of a normal process or session: P0 work goes first when it is there. Its
# work per issue is bounded and mostly waits on I/O, so the rest keeps the cores in between.
# Measured under the ingest load: -5 (3×) left a P0 task waiting 28–36 ms (p50) and 0.6 s (p99)
# after it was published; -10, 5 ms and 85–231 ms.
CRITICAL_NICE = -10
# How long a thread running Python keeps the interpreter while another waits for it (Python's
# default: 5 ms). In the P0 worker, the thread that takes new tasks from the broker waits for
# the interpreter after each read, behind the threads running issues through the pipeline: under
# bench/queue_isolation.py's load a P0 task was received 104 ms (p90) after it was published at
# the default, 14-42 ms at 0.5 ms. The running tasks lose a little CPU to the extra hand-overs.
CRITICAL_SWITCH_INTERVAL = 0.0005
AUTOGROUP = Path("/proc/self/autogroup")


def background_only(queues: Iterable[str]) -> bool:
    names = set(queues)
    return bool(names) and names <= BACKGROUND_QUEUES


def critical_only(queues: Iterable[str]) -> bool:
    names = set(queues)
    return bool(names) and names <= CRITICAL_QUEUES


def session_nice() -> int | None:
    """This session's nice value ("/autogroup-12 nice 0"), or None where autogroups can't be read.

    Some sandboxes show the file but leave it empty."""
    try:
        fields = AUTOGROUP.read_text().split()
        return int(fields[-1]) if fields else None
    except (OSError, ValueError):
        return None


def _nice_move(*, nice: int, further: Callable[[int], bool]) -> tuple[list[str], list[str]]:
    """Set this process's nice value, and its session's if it leads one, to `nice` where
    `further(current)` says that moves it the wanted way; returns (what was changed, what the
    system refused and why)."""
    changed: list[str] = []
    refused: list[str] = []
    if further(os.getpriority(os.PRIO_PROCESS, 0)):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            changed.append(f"nice {nice}")
        except PermissionError as exc:  # only raising a priority needs privileges
            refused.append(f"nice {nice}: {exc.strerror or exc}")
    current = session_nice()
    if os.getsid(0) == os.getpid() and current is not None and further(current):
        try:
            AUTOGROUP.write_text(str(nice))
            changed.append(f"session nice {nice}")
        except OSError as exc:  # unprivileged, a kernel without autogroups, or a read-only /proc
            refused.append(f"session nice {nice}: {exc.strerror or exc}")
    return changed, refused


def cpu_yield(*, nice: int = BACKGROUND_NICE) -> list[str]:
    """Lower this process's CPU priority, and its session's, to `nice` (never raise them);
    returns what was changed."""
    changed, refused = _nice_move(nice=nice, further=lambda current: current < nice)
    if refused:
        logger.info("session CPU weight unchanged", extra={"refused": refused})
    return changed


def cpu_claim(*, nice: int = CRITICAL_NICE) -> tuple[list[str], list[str]]:
    """Raise this process's CPU priority, and its session's, to `nice` (never lower them);
    returns (what was changed, what the system refused and why)."""
    return _nice_move(nice=nice, further=lambda current: current > nice)


def worker_started(*, queues: Iterable[str]) -> None:
    """At a worker's start (celeryd_after_setup): background-only workers yield the CPU, P0-only
    workers claim it."""
    queues = sorted(queues)
    if background_only(queues):
        logger.info("background worker yields the CPU", extra={"queues": queues, "changed": cpu_yield()})
    elif critical_only(queues):
        changed, refused = cpu_claim()
        sys.setswitchinterval(CRITICAL_SWITCH_INTERVAL)  # any process may
        changed.append(f"switch interval {CRITICAL_SWITCH_INTERVAL * 1000:g} ms")
        if refused:
            logger.warning(
                "P0 worker runs without CPU priority: raising it needs root, CAP_SYS_NICE or an "
                "RLIMIT_NICE (systemd: LimitNICE=); on a busy machine P0 work waits for its share",
                extra={"queues": queues, "changed": changed, "refused": refused},
            )
        else:
            logger.info("P0 worker claims the CPU first", extra={"queues": queues, "changed": changed})
