"""The in-process snapshot: evaluations without queries, invalidated by the version key, across
processes and across fork. These tests commit (transactional_db): other processes, and the
snapshot's own caching, only ever see committed rows."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as conf
from django.db import connection, connections, transaction
from django.db.models import F

from flags import evaluate, services
from flags.evaluate import flag_enabled
from flags.models import Flag, SnapshotVersion
from tests.processes import database_url

ROOT = Path(__file__).resolve().parents[2]


def _change_behind_the_snapshot(flag, **fields):
    """What another process's committed change leaves in the database, without its announcement."""
    Flag.objects.filter(pk=flag.pk).update(**fields)
    SnapshotVersion.objects.filter(project_id=flag.project_id).update(version=F("version") + 1)


def test_evaluations_after_the_first_run_no_query(transactional_db, make_flag, project, django_assert_num_queries):
    make_flag(enabled=True, rollout_percentage=50)
    flag_enabled(project_id=project.id, key="new-checkout", user_id="warm-up")
    with django_assert_num_queries(0):
        for n in range(1000):
            flag_enabled(project_id=project.id, key="new-checkout", user_id=str(n))


def test_evaluations_read_no_clock_and_the_ticker_sends_them_back_to_the_snapshot(
    transactional_db, make_flag, project, monkeypatch
):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    ticker = [t for t in threading.enumerate() if t.name == "kaizen-flags-ticker"]
    assert len(ticker) == 1 and ticker[0].is_alive() and ticker[0].daemon

    def no_clock():
        raise AssertionError("flag_enabled read the clock")

    monkeypatch.setattr(evaluate, "_clock", no_clock)
    for n in range(100):
        flag_enabled(project_id=project.id, key=flag.key, user_id=str(n))
    assert project.id in evaluate._fast
    deadline = time.monotonic() + 5
    while project.id in evaluate._fast and time.monotonic() < deadline:
        time.sleep(0.05)
    assert project.id not in evaluate._fast, "the ticker never emptied the fast map"


def test_a_change_reaches_other_processes_through_the_redis_version(transactional_db, make_flag, project, clock):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    _change_behind_the_snapshot(flag, rollout_percentage=100)
    redis.Redis.from_url(conf.REDIS_URL).incr(evaluate.VERSION_KEY)  # the other process's announcement
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")  # read at most every 250 ms
    clock.advance(evaluate.REDIS_POLL_SECONDS)
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")


def test_without_redis_the_database_version_is_polled_once_a_second(
    transactional_db, make_flag, project, clock, settings, django_assert_num_queries
):
    settings.REDIS_URL = ""
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    _change_behind_the_snapshot(flag, rollout_percentage=100)
    clock.advance(evaluate.DB_POLL_SECONDS - 0.05)
    with django_assert_num_queries(0):
        assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    clock.advance(0.1)
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")


def test_unannounced_changes_are_picked_up_after_the_maximum_age(transactional_db, make_flag, project, clock):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    Flag.objects.filter(pk=flag.pk).update(rollout_percentage=100)  # announced nowhere at all
    clock.advance(evaluate.MAX_AGE_SECONDS - 1)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    clock.advance(2)
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")


def test_a_writer_sees_its_change_at_once_and_a_rollback_leaves_no_trace(transactional_db, make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.flag_update(flag=flag, changes={"rollout_percentage": 100}, actor="bob", why="")
        assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")  # its own transaction
        raise RuntimeError("rolled back")
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    services.flag_update(flag=flag, changes={"rollout_percentage": 100}, actor="bob", why="")
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")  # no poll needed after commit


EVALUATOR = textwrap.dedent(
    """
    import sys
    import django

    django.setup()
    from flags.evaluate import flag_enabled

    for line in sys.stdin:
        project_id, key, user_id = line.split()
        print(flag_enabled(project_id=int(project_id), key=key, user_id=user_id), flush=True)
    """
)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="another process needs a shared database server")
def test_another_process_sees_a_change(transactional_db, make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=0)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": conf.REDIS_URL,
    }
    other = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", EVALUATOR], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def ask() -> str:
        other.stdin.write(f"{project.id} {flag.key} 7\n")
        other.stdin.flush()
        return other.stdout.readline().strip()

    try:
        assert ask() == "False"
        services.flag_update(flag=flag, changes={"rollout_percentage": 100}, actor="bob", why="ramp")
        deadline, answer = time.monotonic() + 5, ask()
        while answer != "True" and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = ask()
        assert answer == "True"
        services.flag_kill(flag=flag, actor="bob", why="stop")
        deadline, answer = time.monotonic() + 5, ask()
        while answer != "False" and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = ask()
        assert answer == "False"
    finally:
        other.stdin.close()
        other.wait(timeout=10)


def test_a_forked_child_loads_its_own_snapshot(transactional_db, make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    Flag.objects.filter(pk=flag.pk).update(rollout_percentage=100)  # announced nowhere
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")  # the parent's snapshot
    connections.close_all()  # the child must not talk on the parent's database connection
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child():
        inherited = len(evaluate._state.projects)
        send.send((inherited, flag_enabled(project_id=project.id, key=flag.key, user_id="7")))

    process = context.Process(target=child)
    process.start()
    assert receive.poll(20), "the child never answered"
    assert receive.recv() == (0, True)
    process.join(10)
    assert process.exitcode == 0


def test_a_pid_change_without_fork_hooks_drops_the_snapshot(transactional_db, make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=0)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    Flag.objects.filter(pk=flag.pk).update(rollout_percentage=100)
    # As after a fork that bypassed os.register_at_fork: the state says another pid, poll due;
    # the next evaluation after a tick finds out.
    evaluate._state.pid, evaluate._state.next_poll = -1, 0.0
    evaluate.tick()
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="7")
    assert evaluate._state.pid == os.getpid()
