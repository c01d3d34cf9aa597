"""One rollout through a real Celery worker, and the sweep finishing what a killed worker dropped."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as conf
from django.db import connection
from django.utils import timezone

from flags.models import Flag, Rollout, RolloutStep
from flags.rollout.engine import rollouts_sweep
from flags.rollout.start import rollout_start
from healing.models import Change, ChangeStatus
from tests.flags.rollout.support import KEY, ROOT, phases, verified_change
from tests.processes import database_url

pytestmark = pytest.mark.django_db


# --- A real worker ----------------------------------------------------------------------------


def _worker(log: Path, **env) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": conf.REDIS_URL,
        "CELERY_BROKER_URL": conf.CELERY_BROKER_URL,
        **env,
    }
    command = [sys.executable, "-m", "celery", "-A", "kaizen_site", "worker", "-Q", "ops", "-c", "1", "-P", "solo",
               "--without-gossip", "--without-mingle", "--loglevel", "INFO", "-n", f"rollout-{time.time_ns()}@%h"]  # fmt: skip
    with log.open("a") as out:  # the worker keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)


def _wait(predicate, *, seconds: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def _stop(worker: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if worker.poll() is None:
        worker.send_signal(sig)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


def _phase(rollout) -> str:
    return Rollout.objects.filter(pk=rollout.pk).values_list("phase", flat=True).get()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql" or not conf.CELERY_BROKER_URL.startswith("redis"),
    reason="a worker process needs the shared PostgreSQL and the Redis broker",
)
def test_a_real_worker_rolls_out_and_the_sweep_finishes_what_a_killed_worker_dropped(
    make_flag, issue, allow_all, broker, tmp_path
):
    log = tmp_path / "worker.log"
    all_steps = [("", "canary"), ("canary", "partial"), ("partial", "full"), ("full", "done")]

    # 1. Phases of one second, each ended by its ETA task on the worker.
    make_flag(key=KEY)
    first = rollout_start(
        change=verified_change(issue=issue), actor="kaizen", canary_seconds=1, partial_seconds=1, full_seconds=1
    )
    worker = _worker(log)
    try:
        _wait(lambda: _phase(first) == "done", seconds=60, log=log, what="the rollout to finish")
    finally:
        _stop(worker)
    assert phases(first) == all_steps
    assert Change.objects.get(pk=first.change_id).status == ChangeStatus.COMPLETE
    assert Flag.objects.get(key=KEY).rollout_percentage == 100

    # 2. The worker is killed while it holds the partial phase's ETA task.
    make_flag(key="second-fix")
    second = rollout_start(
        change=verified_change(issue=issue, flag_key="second-fix"), actor="kaizen", affected_user_id="u7",
        canary_seconds=1, partial_seconds=10, full_seconds=1,
    )  # fmt: skip
    worker = _worker(log)
    try:
        _wait(lambda: _phase(second) == "partial", seconds=60, log=log, what="the partial phase")
        _wait(lambda: broker.hlen("unacked") == 1, seconds=10, log=log, what="the worker to take the ETA task")
        _stop(worker, signal.SIGKILL)
    finally:
        _stop(worker, signal.SIGKILL)
    assert broker.hlen("unacked") == 1  # back in the queue only after the visibility timeout (an hour)

    # Beat's sweep ends the phases the dead worker would have.
    later = timezone.now() + timedelta(seconds=11)
    assert rollouts_sweep(now=later) == {"promoted": 1}
    assert rollouts_sweep(now=later + timedelta(seconds=2)) == {"done": 1}
    assert phases(second) == all_steps

    # A worker that restores the dead one's message at once runs it (at its ETA, the partial
    # phase's real end) and the full phase's task the sweep sent: both stale, no step repeated.
    seen = len(log.read_text())
    worker = _worker(log, CELERY_VISIBILITY_TIMEOUT="1")
    try:
        _wait(
            lambda: broker.hlen("unacked") == 0 and broker.llen("ops") == 0 and log.read_text()[seen:].count("'stale'") >= 2,
            seconds=60, log=log, what="the leftover tasks to run",
        )  # fmt: skip
    finally:
        _stop(worker)
    assert phases(second) == all_steps and _phase(second) == "done"
    assert RolloutStep.objects.filter(rollout__in=[first, second]).count() == 8
