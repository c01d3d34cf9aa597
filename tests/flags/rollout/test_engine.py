"""The rollout engine: canary → partial → full → done, rollback on degradation, and at-least-once
delivery (duplicate, stale and lost phase tasks)."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings as conf
from django.db import connection

from flags import services, tasks
from flags.models import Flag, FlagChange, FlagStatus, Override, Rollout, RolloutStep
from flags.rollout import engine
from flags.rollout.engine import Outcome, RolloutError, rollout_advance, rollouts_sweep
from flags.rollout.start import rollout_start
from healing.changes.lifecycle import change_transition
from healing.loop import outcomes
from healing.models import AuditEntry, Change, ChangeStatus, EnqueueState, PromotionLogEntry
from tests.factories import IssueFactory, OccurrenceFactory
from tests.flags.rollout.support import (
    AFFECTED,
    CANARY,
    FULL,
    PARTIAL,
    enabled_for,
    phases,
    users_in_bucket,
    verified_change,
)

pytestmark = pytest.mark.django_db


# --- The promote path -------------------------------------------------------------------------


def test_promote_path_end_to_end(start, issue, allow_all, monkeypatch, django_capture_on_commit_callbacks):
    told = []
    monkeypatch.setattr(outcomes, "change_completed", lambda **kw: told.append(kw))
    rollout, t0 = start()
    flag, change = rollout.flag, rollout.change
    flag.refresh_from_db()
    change.refresh_from_db()
    assert change.status == ChangeStatus.CANARY
    assert (flag.enabled, flag.rollout_percentage, flag.status) == (True, 0, FlagStatus.TESTING)
    assert Override.objects.get(flag=flag).user_id == AFFECTED
    assert enabled_for(flag, AFFECTED) and not enabled_for(flag, "someone-else")
    assert rollout.affected_user_id == AFFECTED and rollout.issue == issue and rollout.fingerprint == issue.fingerprint
    # Recorded for targeting once flags have constraints; the cart is not a plan/config attribute.
    assert rollout.target_attributes == {"plan": "pro", "config_version": 7}

    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY / 2) == Outcome.NOT_DUE
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == Outcome.PROMOTED
    flag.refresh_from_db()
    rollout.refresh_from_db()
    assert (rollout.phase, rollout.exposure_percentage, flag.rollout_percentage) == ("partial", 10, 10)
    ten_percent = users_in_bucket(flag, within=10, n=3)
    others = users_in_bucket(flag, within=10, n=3, inside=False)
    assert all(enabled_for(flag, u) for u in ten_percent) and not any(enabled_for(flag, u) for u in others)
    assert enabled_for(flag, AFFECTED)  # the canary user keeps it

    t1 = t0 + CANARY
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="partial", now=t1 + PARTIAL) == Outcome.PROMOTED
    flag.refresh_from_db()
    assert (flag.rollout_percentage, flag.status) == (100, FlagStatus.MONITORING)

    t2 = t1 + PARTIAL
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout_advance(rollout_id=rollout.pk, expected_phase="full", now=t2 + FULL) == Outcome.DONE
    assert told == [{"change_id": change.pk}]  # the pipeline resolves the issue and learns from it
    rollout.refresh_from_db()
    flag.refresh_from_db()
    change.refresh_from_db()
    assert rollout.phase == "done" and rollout.finished_at == t2 + FULL and rollout.exposure_percentage == 100
    assert change.status == ChangeStatus.COMPLETE
    assert (flag.enabled, flag.rollout_percentage, flag.killed, flag.status) == (True, 100, False, FlagStatus.STABLE)
    assert not Override.objects.filter(flag=flag).exists()
    assert all(enabled_for(flag, u) for u in [*ten_percent, *others, AFFECTED])

    assert phases(rollout) == [("", "canary"), ("canary", "partial"), ("partial", "full"), ("full", "done")]
    assert set(RolloutStep.objects.filter(rollout=rollout).values_list("actor", flat=True)) == {"kaizen"}
    assert RolloutStep.objects.get(rollout=rollout, to_phase="partial").metrics["watched_new"] == 0
    target = f"rollout:{change.key}"
    assert list(AuditEntry.objects.filter(target=target).order_by("id").values_list("action", flat=True)) == [
        "rollout.start", "rollout.promote", "rollout.promote", "rollout.complete",
    ]  # fmt: skip
    moves = PromotionLogEntry.objects.filter(change=change).values_list("from_status", "to_status")
    assert list(moves)[-2:] == [("in_review", "canary"), ("canary", "complete")]
    # Each flag move is in the flag's own history too.
    assert FlagChange.objects.filter(flag=flag, why__startswith=f"Rollout of {change.key}").count() == 4


def test_each_phase_schedules_its_end_on_the_ops_queue_after_commit(
    start, allow_all, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(
        engine, "task_publish", lambda name, **kw: name == tasks.rollout_advance.name and sent.append(kw)
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        rollout, t0 = start()
    assert sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [{"args": [rollout.pk, "canary"], "countdown": 300, "queue": "ops"}]
    with django_capture_on_commit_callbacks(execute=True):
        rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY)
    assert sent[-1] == {"args": [rollout.pk, "partial"], "countdown": 1800, "queue": "ops"}
    assert tasks.rollout_advance.queue == "ops" and tasks.rollouts_sweep.queue == "ops"
    assert conf.CELERY_BEAT_SCHEDULE["sweep-rollouts"]["task"] == "flags.tasks.rollouts_sweep"


def test_a_task_that_fires_early_sends_itself_again_for_the_rest(
    start, allow_all, monkeypatch, django_capture_on_commit_callbacks
):
    rollout, t0 = start()
    sent = []
    monkeypatch.setattr(
        engine, "task_publish", lambda name, **kw: name == tasks.rollout_advance.name and sent.append(kw)
    )
    early = t0 + CANARY - timedelta(seconds=2.5)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=early, resend_if_early=True)
            == "not_due"
        )
        assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=early) == "not_due"  # the sweep
    assert sent == [{"args": [rollout.pk, "canary"], "countdown": 3, "queue": "ops"}]


def test_a_phase_longer_than_the_visibility_timeout_is_left_to_the_sweep(
    start, allow_all, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    sent = []
    monkeypatch.setattr(
        engine, "task_publish", lambda name, **kw: name == tasks.rollout_advance.name and sent.append(kw)
    )
    with django_capture_on_commit_callbacks(execute=True):
        rollout, t0 = start(canary_seconds=2 * 3600)
    assert sent == []  # redelivered every hour while a worker waited: the sweep ends it instead
    assert rollouts_sweep(now=t0 + timedelta(hours=2)) == {"promoted": 1}


# --- Rollback ---------------------------------------------------------------------------------


def test_degradation_during_the_canary_rolls_back(
    start, issue, allow_all, broker, monkeypatch, django_capture_on_commit_callbacks
):
    told = []
    monkeypatch.setattr(outcomes, "change_rolled_back", lambda **kw: told.append(kw))
    rollout, t0 = start()
    flag, change = rollout.flag, rollout.change
    OccurrenceFactory(issue=issue, user_id=AFFECTED, received_at=t0 + timedelta(minutes=1))  # the fix did not fix it

    with django_capture_on_commit_callbacks(execute=True):
        counts = rollouts_sweep(now=t0 + timedelta(minutes=1, seconds=30))  # well before the canary's end
    assert counts == {"rolled_back": 1}
    rollout.refresh_from_db()
    flag.refresh_from_db()
    change.refresh_from_db()
    issue.refresh_from_db()
    step = RolloutStep.objects.get(rollout=rollout, to_phase="rolled_back")
    step_why = step.why
    assert rollout.phase == "rolled_back" and rollout.exposure_percentage == 0
    assert "1 new occurrence(s) of the watched issue" in rollout.health_notes
    assert flag.killed and flag.killed_by == "kaizen" and not enabled_for(flag, AFFECTED)
    assert change.status == ChangeStatus.ABORTED
    assert (issue.base_severity, issue.severity) == ("P2", "P1")  # a rollback is impact: one level up
    assert told == [{"change_id": change.pk, "why": step_why}]  # the pipeline escalates the issue's stage
    # Re-enqueued on its (new) severity's queue like the outbox does, and marked sent once the broker took it.
    assert issue.enqueue_state == EnqueueState.SENT and broker.llen("P1") == 1
    assert (step.from_phase, step.outcome, step.metrics["watched_new"], step.metrics["degraded"]) == (
        "canary", "rolled_back", 1, True,
    )  # fmt: skip
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"flag.kill", "change.transition", "issue.severity_raise", "rollout.rollback", "owner.alert"} <= actions
    alert = AuditEntry.objects.get(action="owner.alert")
    assert alert.detail["kind"] == "rollback" and change.key in alert.detail["message"]
    assert PromotionLogEntry.objects.filter(change=change, to_status="aborted").exists()
    # Finished: later tasks and sweeps leave it alone.
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary") == Outcome.STALE
    assert rollouts_sweep(now=t0 + CANARY) == {}


def test_the_bug_still_hitting_users_without_the_fix_is_not_a_degradation(start, issue, allow_all):
    rollout, t0 = start()
    OccurrenceFactory(issue=issue, user_id="not-in-the-canary", received_at=t0 + timedelta(minutes=1))
    OccurrenceFactory(issue=issue, user_id="", received_at=t0 + timedelta(minutes=1))
    assert rollouts_sweep(now=t0 + timedelta(minutes=2)) == {"not_due": 1}
    rollout.refresh_from_db()
    assert rollout.phase == "canary" and rollout.phase_new_occurrences == 0 and rollout.health_checked_at


def test_error_rate_among_exposed_users_rolls_back_the_partial_phase(start, project, allow_all):
    rollout, t0 = start()
    t1 = t0 + CANARY
    rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t1)
    other = IssueFactory(project=project, type="ERROR")
    # The same number of errors from users outside the 10 % is no signal about the fix.
    for user_id in users_in_bucket(rollout.flag, within=10, n=6, inside=False):
        OccurrenceFactory(issue=other, user_id=user_id, received_at=t1 + timedelta(minutes=1))
    assert rollouts_sweep(now=t1 + timedelta(minutes=2)) == {"not_due": 1}
    for user_id in users_in_bucket(rollout.flag, within=10, n=6):
        OccurrenceFactory(issue=other, user_id=user_id, received_at=t1 + timedelta(minutes=1))
    assert rollouts_sweep(now=t1 + timedelta(minutes=2)) == {"rolled_back": 1}
    rollout.refresh_from_db()
    assert "error rate" in rollout.health_notes and "baseline 0.00/min" in rollout.health_notes
    assert rollout.flag.__class__.objects.get(pk=rollout.flag_id).killed


def test_a_change_aborted_in_the_console_rolls_its_rollout_back(start, allow_all):
    rollout, t0 = start()
    change_transition(change=rollout.change, to=ChangeStatus.ABORTED, actor="owner", why="changed my mind")
    assert rollouts_sweep(now=t0 + timedelta(minutes=1)) == {"rolled_back": 1}
    assert Flag.objects.get(pk=rollout.flag_id).killed
    assert "aborted outside its rollout" in Rollout.objects.get(pk=rollout.pk).health_notes


def test_a_flag_killed_by_hand_rolls_its_rollout_back(start, allow_all):
    rollout, t0 = start()
    services.flag_kill(flag=rollout.flag, actor="owner", why="emergency")
    assert rollouts_sweep(now=t0 + timedelta(minutes=1)) == {"rolled_back": 1}
    assert Change.objects.get(pk=rollout.change_id).status == ChangeStatus.ABORTED
    assert Flag.objects.get(pk=rollout.flag_id).killed_by == "owner"  # the kill is the owner's, recorded once
    assert FlagChange.objects.filter(flag=rollout.flag, action="kill").count() == 1


def test_roll_back_by_hand(start, allow_all):
    rollout, _ = start()
    rolled = engine.rollout_rollback(rollout=rollout, actor="owner", why="looks wrong")
    assert rolled.phase == "rolled_back" and Flag.objects.get(pk=rollout.flag_id).killed
    assert RolloutStep.objects.get(to_phase="rolled_back").actor == "owner"
    with pytest.raises(RolloutError, match="nothing to roll back"):
        engine.rollout_rollback(rollout=rollout, actor="owner", why="again")


# --- At-least-once delivery -------------------------------------------------------------------


def test_duplicate_and_stale_phase_tasks_do_nothing(start, allow_all):
    rollout, t0 = start()
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == Outcome.PROMOTED
    history = FlagChange.objects.count(), AuditEntry.objects.count()
    # The duplicate of the task that just ran, and a redelivered one from the phase before.
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == Outcome.STALE
    assert tasks.rollout_advance(rollout.pk, "canary") == "stale"  # the task itself, as a worker runs it
    # A task naming a phase the rollout has not reached yet is stale too.
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="full", now=t0 + CANARY + PARTIAL) == Outcome.STALE
    assert tasks.rollout_advance(999_999, "canary") == "stale"  # a rollout that is gone
    assert (FlagChange.objects.count(), AuditEntry.objects.count()) == history
    assert phases(rollout) == [("", "canary"), ("canary", "partial")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent transactions")
def test_two_deliveries_racing_promote_once(start, allow_all):
    rollout, t0 = start()
    barrier, outcomes = threading.Barrier(2), []

    def deliver():
        try:
            barrier.wait()
            outcomes.append(str(rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY)))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["promoted", "stale"]
    assert phases(rollout) == [("", "canary"), ("canary", "partial")]


def test_the_sweep_advances_an_overdue_rollout_whose_task_was_lost(start, allow_all):
    rollout, t0 = start()  # its task was never run: the worker holding it restarted
    assert rollouts_sweep(now=t0 + CANARY - timedelta(seconds=1)) == {"not_due": 1}
    assert rollouts_sweep(now=t0 + CANARY + timedelta(seconds=20)) == {"promoted": 1}
    assert rollouts_sweep(now=t0 + CANARY + timedelta(seconds=50)) == {"not_due": 1}
    later = t0 + CANARY + PARTIAL + timedelta(seconds=30)
    assert rollouts_sweep(now=later) == {"promoted": 1}
    assert rollouts_sweep(now=later + FULL) == {"done": 1}
    # The task that was lost turns up after all (redelivered after the visibility timeout).
    assert tasks.rollout_advance(rollout.pk, "canary") == "stale"
    assert phases(rollout) == [("", "canary"), ("canary", "partial"), ("partial", "full"), ("full", "done")]


def test_one_broken_rollout_does_not_stop_the_sweep(start, allow_all, monkeypatch, make_flag, issue):
    first, t0 = start()
    make_flag(key="other-fix")
    second = rollout_start(change=verified_change(flag_key="other-fix"), actor="kaizen", affected_user_id="u1", now=t0)
    real = engine.rollout_health

    def broken(*, rollout, now=None):
        if rollout.pk == first.pk:
            raise RuntimeError("boom")
        return real(rollout=rollout, now=now)

    monkeypatch.setattr(engine, "rollout_health", broken)
    assert rollouts_sweep(now=t0 + CANARY) == {"error": 1, "promoted": 1}
    assert Rollout.objects.get(pk=second.pk).phase == "partial"
