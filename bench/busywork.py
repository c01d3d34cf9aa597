"""Worker-side half of bench/queue_isolation.py: a task that keeps a worker busy, and a probe that
records when issue work starts.

Workers load it with `celery -A kaizen_site worker --include bench.busywork`.

- `busy` stands for one piece of routine work: ~50 ms of CPU (or, for comparison, of sleep).
- For every healing.tasks.process_issue a worker is about to run, `task_prerun` stores the
  wall-clock start time (time.time()) under the issue id in the Redis hash STARTS_KEY.
"""

import time

from celery import shared_task
from celery.signals import task_prerun

from kaizen_site import redis_client

STARTS_KEY = "bench:process_issue:started"
PROCESS_ISSUE = "healing.tasks.process_issue"
WORK_SECONDS = 0.05


@shared_task(name="bench.busywork.busy")
def busy(seconds: float = WORK_SECONDS, mode: str = "burn") -> None:
    """Burn `seconds` of this thread's CPU time, or sleep that long with mode="sleep"."""
    if mode == "sleep":
        time.sleep(seconds)
        return
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        for _ in range(1000):  # reading the CPU clock is a system call: do some work between reads
            pass


@task_prerun.connect
def record_issue_start(sender=None, args=None, **_) -> None:
    if sender is not None and sender.name == PROCESS_ISSUE and args:
        redis_client.get().client.hset(STARTS_KEY, str(args[0]), repr(time.time()))
