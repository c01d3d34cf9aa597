"""A worker that serves only background queues lowers its CPU priority, and its session's, at start;
one that serves only P0 raises them where the system allows, and says so where it does not.

Each case runs in a child process: lowering a priority cannot be undone without privileges, and
the test process must keep its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaizen_site.worker_priority import (
    BACKGROUND_NICE,
    CRITICAL_NICE,
    CRITICAL_SWITCH_INTERVAL,
    background_only,
    cpu_claim,
    cpu_yield,
    critical_only,
    session_nice,
)

ROOT = Path(__file__).resolve().parent.parent

# Prints this process's nice value, its session's ("/autogroup-12 nice 0") and the interpreter's
# switch interval, after `code`.
REPORT = """
import json, os, sys
from kaizen_site.worker_priority import session_nice
print(json.dumps({"nice": os.getpriority(os.PRIO_PROCESS, 0), "session": session_nice(), "switch": sys.getswitchinterval()}))
"""


def run_child(code: str, *, own_session: bool) -> dict:
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code + REPORT], cwd=ROOT, capture_output=True, text=True, timeout=60,
        start_new_session=own_session, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = {}  # the code may print a JSON line of its own before the report's
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            found |= json.loads(line)
    return found


@pytest.fixture(scope="module")
def new_session_nice() -> int | None:
    """What a process in a session of its own reads before anyone changes it.

    Not this process's reading: a process that never left the first session shows an empty file
    (it has no autogroup of its own), yet a new session gets one, with nice 0."""
    return run_child("", own_session=True)["session"]


@pytest.mark.parametrize(
    ("queues", "background"),
    [
        (["P2", "P3", "research"], True),
        (["P3"], True),
        (["P0"], False),
        (["P1", "notify", "ops"], False),
        (["P2", "P1"], False),  # one urgent queue is enough to keep the priority
        ([], False),
    ],
)
def test_which_workers_are_background(queues, background):
    assert background_only(queues) is background


@pytest.mark.parametrize(
    ("queues", "critical"),
    [(["P0"], True), (["P0", "P1"], False), (["P1", "notify", "ops"], False), ([], False)],
)
def test_which_workers_are_critical(queues, critical):
    assert critical_only(queues) is critical


def test_the_routine_group_yields_the_cpu_through_the_worker_start_signal(new_session_nice):
    """What `celery worker --queues P2,P3,research` does once its queues are set, before it forks."""
    code = """
import django, json; django.setup()
from types import SimpleNamespace
from unittest import mock
from celery.signals import celeryd_after_setup
from kaizen_site.celery import app
app.amqp.queues.select(["P2", "P3", "research"])
with mock.patch("kaizen_site.worker_priority.logger") as logger:
    celeryd_after_setup.send(sender="routine@test", instance=SimpleNamespace(app=app), conf=app.conf)
print(json.dumps({"changed": logger.info.call_args.kwargs["extra"]["changed"]}))
"""
    found = run_child(code, own_session=True)
    assert found["nice"] == BACKGROUND_NICE
    assert found["switch"] == sys.getswitchinterval()  # only the P0 worker changes it
    if new_session_nice is None:  # no autogroups: nothing to write
        assert found["session"] is None
    else:  # written where /proc allows it, and then the worker says so
        changed = f"session nice {BACKGROUND_NICE}" in found["changed"]
        assert found["session"] == (BACKGROUND_NICE if changed else new_session_nice)


def test_urgent_workers_keep_their_priority(new_session_nice):
    code = """
import django; django.setup()
from types import SimpleNamespace
from celery.signals import celeryd_after_setup
from kaizen_site.celery import app
app.amqp.queues.select(["P1", "notify", "ops"])
celeryd_after_setup.send(sender="urgent@test", instance=SimpleNamespace(app=app), conf=app.conf)
"""
    assert run_child(code, own_session=True) == {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "session": new_session_nice,
        "switch": sys.getswitchinterval(),
    }


def test_the_critical_group_claims_the_cpu_where_allowed(new_session_nice):
    """`celery worker --queues P0`: privileged, it runs (and its threads start) at CRITICAL_NICE,
    its session too; unprivileged, it keeps the priority it had and warns, naming what it needs."""
    code = """
import django, json; django.setup()
from types import SimpleNamespace
from unittest import mock
from celery.signals import celeryd_after_setup
from kaizen_site.celery import app
app.amqp.queues.select(["P0"])
with mock.patch("kaizen_site.worker_priority.logger") as logger:
    celeryd_after_setup.send(sender="critical@test", instance=SimpleNamespace(app=app), conf=app.conf)
call = (logger.warning.call_args or logger.info.call_args)
print(json.dumps({"said": call.args[0], **call.kwargs["extra"]}))
"""
    found = run_child(code, own_session=True)
    # Privileged or not, the thread that takes P0 tasks gets the interpreter back sooner.
    assert found["switch"] == pytest.approx(CRITICAL_SWITCH_INTERVAL)
    assert found["switch"] < sys.getswitchinterval()
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if f"nice {CRITICAL_NICE}" in found["changed"]:
        assert found["nice"] == CRITICAL_NICE
        assert "refused" not in found
    else:
        assert found["nice"] == before
        assert any(item.startswith(f"nice {CRITICAL_NICE}") for item in found["refused"])
        assert "CAP_SYS_NICE" in found["said"]
    changed = f"session nice {CRITICAL_NICE}" in found["changed"]
    if new_session_nice is None:
        assert found["session"] is None
    else:
        assert found["session"] == (CRITICAL_NICE if changed else new_session_nice)


def test_an_unprivileged_claim_changes_nothing_and_names_the_refusals(monkeypatch):
    class Autogroup:  # what an unprivileged process sees: readable, and writing a lower nice refused
        def read_text(self) -> str:
            return "/autogroup-9 nice 0"

        def write_text(self, text: str) -> None:
            raise PermissionError(1, "Operation not permitted")

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("kaizen_site.worker_priority.AUTOGROUP", Autogroup())
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid())
    monkeypatch.setattr(os, "getpriority", lambda *args: 0)
    monkeypatch.setattr(os, "setpriority", refuse)
    assert cpu_claim() == (
        [],
        [f"nice {CRITICAL_NICE}: Operation not permitted", f"session nice {CRITICAL_NICE}: Operation not permitted"],
    )


def test_claiming_never_lowers_a_priority_already_higher(tmp_path, monkeypatch):
    """An operator who started the worker at nice -12 (or gave its session that) keeps it."""
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("/autogroup-9 nice -12")

    def must_not_change(*args):
        raise AssertionError(f"setpriority{args}")

    monkeypatch.setattr("kaizen_site.worker_priority.AUTOGROUP", autogroup)
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid())
    monkeypatch.setattr(os, "getpriority", lambda *args: -12)
    monkeypatch.setattr(os, "setpriority", must_not_change)
    assert cpu_claim() == ([], [])
    assert autogroup.read_text() == "/autogroup-9 nice -12"


def test_a_worker_sharing_its_session_leaves_the_session_alone():
    """Started from a shell, the shell's session (and whatever else runs in it) keeps its weight."""
    before = session_nice()
    found = run_child("from kaizen_site.worker_priority import cpu_yield; cpu_yield()", own_session=False)
    assert found == {"nice": BACKGROUND_NICE, "session": before, "switch": sys.getswitchinterval()}
    assert session_nice() == before


def test_yielding_never_raises_a_priority_already_lower():
    code = "import os\nos.setpriority(os.PRIO_PROCESS, 0, 15)\nfrom kaizen_site.worker_priority import cpu_yield\ncpu_yield()"
    assert run_child(code, own_session=True)["nice"] == 15


def test_yielding_never_raises_a_session_already_lower(tmp_path, monkeypatch):
    """An operator who gave the session nice 15 keeps it; the process itself still yields."""
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("/autogroup-9 nice 15")
    monkeypatch.setattr("kaizen_site.worker_priority.AUTOGROUP", autogroup)
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid())
    monkeypatch.setattr(os, "getpriority", lambda *args: 0)
    monkeypatch.setattr(os, "setpriority", lambda *args: None)
    assert cpu_yield() == [f"nice {BACKGROUND_NICE}"]
    assert autogroup.read_text() == "/autogroup-9 nice 15"


@pytest.mark.parametrize("content", ["", "garbage", "/autogroup-7 nice"])
def test_an_unreadable_session_weight_is_left_alone(tmp_path, monkeypatch, content):
    """Some sandboxes show /proc/self/autogroup but leave it empty: no weight to read, none written."""
    autogroup = tmp_path / "autogroup"
    autogroup.write_text(content)
    monkeypatch.setattr("kaizen_site.worker_priority.AUTOGROUP", autogroup)
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid())  # as if this process led its session
    monkeypatch.setattr(os, "getpriority", lambda *args: BACKGROUND_NICE)  # nothing to lower here
    assert session_nice() is None
    assert cpu_yield() == []
    assert autogroup.read_text() == content
