"""The progressive rollout: canary → partial → full → done, rollback on degradation, at-least-once
delivery (duplicate, stale and lost phase tasks), the promotion policy and the owner's approval,
bad input, the console, and one run through a real Celery worker."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as conf
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from flags import services, tasks
from flags.evaluate import bucket, flag_enabled, snapshot_forget
from flags.models import Flag, FlagChange, FlagStatus, Override, PromotionPolicy, Rollout, RolloutStep
from flags.rollout import engine, promotion
from flags.rollout.engine import Outcome, RolloutError, rollout_advance, rollouts_sweep
from flags.rollout.start import rollout_start
from healing.changes.lifecycle import change_create, change_transition
from healing.loop import outcomes
from healing.models import AuditEntry, Change, ChangeStatus, EnqueueState, PromotionLogEntry
from tests.factories import IssueFactory, OccurrenceFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
AFFECTED = "user-42"
KEY = "fix-checkout"
CANARY, PARTIAL, FULL = timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=30)


@pytest.fixture
def issue(project):
    issue = IssueFactory(project=project, occurrence_count=1)
    OccurrenceFactory(
        issue=issue,
        user_id=AFFECTED,
        received_at=timezone.now() - timedelta(hours=2),
        payload={"message": "checkout failed", "tags": {"plan": "pro", "browser": "firefox"},
                 "state": {"config_version": 7, "cart": {"items": 3}}},
    )  # fmt: skip
    return issue


@pytest.fixture
def allow_all():
    """A policy that lets every promotion through: the tests of the engine itself use it."""
    return PromotionPolicy.objects.create(max_auto_exposure=100)


def verified_change(*, issue=None, flag_key=KEY, **fields) -> Change:
    change = change_create(title="Fix the checkout", severity="P2", actor="alice", issue=issue, flag_key=flag_key,
                           **fields)  # fmt: skip
    Change.objects.filter(pk=change.pk).update(status=ChangeStatus.IN_REVIEW)  # verified: set-up, not a transition
    change.refresh_from_db()
    return change


@pytest.fixture
def start(make_flag, issue):
    """Start a rollout of a verified change for `issue`; returns (rollout, start time)."""

    def run(*, at=None, change=None, **kwargs):
        make_flag(key=KEY)
        at = at or timezone.now()
        return rollout_start(change=change or verified_change(issue=issue), actor="kaizen", now=at, **kwargs), at

    return run


def phases(rollout) -> list[tuple[str, str]]:
    return list(RolloutStep.objects.filter(rollout=rollout).values_list("from_phase", "to_phase"))


def enabled_for(flag, user_id) -> bool:
    snapshot_forget()
    return flag_enabled(project_id=flag.project_id, key=flag.key, user_id=user_id)


def users_in_bucket(flag, *, within: int, n: int, inside: bool = True) -> list[str]:
    found = []
    for i in range(10_000):
        user_id = f"u{i}"
        if (bucket(group_id=flag.bucket_group, user_id=user_id) <= within) == inside and user_id != AFFECTED:
            found.append(user_id)
            if len(found) == n:
                return found
    raise AssertionError("not enough users")


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


# --- Promotion policy -------------------------------------------------------------------------


def at(hour: int, minute: int = 0) -> datetime:
    """A moment whose wall-clock time in Paris (UTC+1 in January) is hour:minute."""
    return datetime(2026, 1, 15, hour, minute, tzinfo=UTC) - timedelta(hours=1)


def test_blocked_hours_hold_a_promotion_until_the_owner_approves(start, settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/Paris"
    PromotionPolicy.objects.create(max_auto_exposure=100, blocked_from_hour=22, blocked_to_hour=7)
    rollout, t0 = start(at=at(23, 0))
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=at(23, 10)) == Outcome.AWAITING_APPROVAL
    rollout.refresh_from_db()
    assert (rollout.phase, rollout.approval_state) == ("canary", "awaiting_approval")
    assert rollout.approval_reasons == ["within the blocked hours 22:00–07:00 (Europe/Paris)"]
    assert Flag.objects.get(pk=rollout.flag_id).rollout_percentage == 0
    assert AuditEntry.objects.filter(action="owner.alert", detail__kind="approval_needed").count() == 1
    # Asked again by every sweep: recorded once while the reasons stay the same.
    assert rollouts_sweep(now=at(23, 40)) == {"awaiting_approval": 1}
    assert AuditEntry.objects.filter(action="rollout.awaiting_approval").count() == 1

    outcome = engine.rollout_approve(rollout=rollout, actor="owner", why="I am awake", now=at(23, 45))
    assert outcome == Outcome.PROMOTED
    rollout.refresh_from_db()
    assert (rollout.phase, rollout.approval_state, rollout.approval_reasons) == ("partial", "", [])
    step = RolloutStep.objects.get(rollout=rollout, to_phase="partial")
    assert (step.actor, step.outcome, step.why) == ("owner", "approved", "I am awake")
    approval = AuditEntry.objects.get(action="rollout.approve")
    assert approval.actor == "owner" and approval.detail["overridden"] == [
        "within the blocked hours 22:00–07:00 (Europe/Paris)"
    ]
    with pytest.raises(RolloutError, match="not awaiting approval"):
        engine.rollout_approve(rollout=rollout, actor="owner", why="", now=at(23, 50))


def test_a_promotion_held_by_blocked_hours_goes_ahead_when_they_end(start, settings):
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/Paris"
    PromotionPolicy.objects.create(max_auto_exposure=100, blocked_from_hour=22, blocked_to_hour=7)
    rollout, _ = start(at=at(6, 0))
    assert rollouts_sweep(now=at(6, 30)) == {"awaiting_approval": 1}
    assert rollouts_sweep(now=at(7, 0)) == {"promoted": 1}


def test_exposure_over_the_limit_waits_for_approval(start):
    rollout, t0 = start()  # no policy row: the defaults, 10 % without approval
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == Outcome.PROMOTED
    t1 = t0 + CANARY
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="partial", now=t1 + PARTIAL) == "awaiting_approval"
    rollout.refresh_from_db()
    assert rollout.approval_reasons == ["100 % exposure is over the 10 % allowed without approval"]
    assert engine.rollout_approve(rollout=rollout, actor="owner", why="", now=t1 + PARTIAL) == Outcome.PROMOTED
    assert Flag.objects.get(pk=rollout.flag_id).rollout_percentage == 100


def test_a_project_policy_beats_the_default(start, project):
    PromotionPolicy.objects.create(max_auto_exposure=5)
    PromotionPolicy.objects.create(project=project, max_auto_exposure=100)
    rollout, t0 = start()
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == Outcome.PROMOTED


def test_risk_above_the_policy_waits_for_approval(start, issue):
    PromotionPolicy.objects.create(max_auto_exposure=100, max_auto_risk="medium")
    change = verified_change(issue=issue, plan=[{"action": "migrate_schema", "params": {"risk": "high"}}])
    rollout, t0 = start(change=change)
    decision = promotion.policy_check(rollout=rollout, to_phase="partial", now=t0)
    assert decision == promotion.PolicyDecision(
        allowed=False, reasons=("risk high is above medium, the highest promoted without approval",)
    )
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY) == "awaiting_approval"


def test_risk_comes_from_the_actions_of_the_plan_or_the_patch_else_low():
    def risk(**fields):
        return promotion.change_risk(
            change=Change(plan=fields.get("plan", []), patch_summary=fields.get("summary", ""))
        )

    enable = {"action": "flag_enable_for_user", "params": {"flag": "fix"}}
    assert risk() == "low"
    assert risk(plan=[enable]) == "low"
    # Each registered action states its risk: the policy sees a kill switch for what it is.
    assert risk(plan=[enable, {"action": "flag_kill", "params": {"flag": "fix"}}]) == "high"
    assert risk(plan=[{"action": "flag_set_rollout", "params": {"flag": "fix", "percentage": 100}}]) == "medium"
    assert risk(summary="Raise the timeout.\n\n**Risk:** medium\n") == "medium"
    assert risk(summary="Risk: critical") == "high"  # unknown word: fail closed
    assert risk(plan=[{"action": "migrate_schema", "params": {}}]) == "high"  # not runnable: fail closed


def test_llm_spend_over_the_daily_budget_waits_for_approval(start):
    try:
        calls = apps.get_model("kaizen_site", "LLMCall")
    except LookupError:
        pytest.skip("no LLM call log in this build")
    PromotionPolicy.objects.create(max_auto_exposure=100, daily_llm_budget_usd=Decimal("1.00"))
    rollout, t0 = start()
    calls.objects.create(purpose="diagnosis", model="m", prompt_fingerprint="f", cost_usd=Decimal("0.60"))
    assert promotion.policy_check(rollout=rollout, to_phase="partial").allowed
    calls.objects.create(purpose="diagnosis", model="m", prompt_fingerprint="f", cost_usd=Decimal("0.60"))
    calls.objects.create(purpose="diagnosis", model="m", prompt_fingerprint="f", cost_usd=None)  # unpriced
    decision = promotion.policy_check(rollout=rollout, to_phase="partial")
    assert decision.reasons == ("today's LLM spend $1.20 is over the $1.00 daily budget",)


# --- Bad input --------------------------------------------------------------------------------


def test_a_change_without_a_flag_cannot_be_rolled_out(issue, make_flag):
    with pytest.raises(RolloutError, match=r"KAIZ-001 has no flag: set its flag_key"):
        rollout_start(change=verified_change(issue=issue, flag_key=""), actor="kaizen")
    with pytest.raises(RolloutError, match=r"no flag missing-flag in project .*; create it first"):
        rollout_start(change=verified_change(issue=issue, flag_key="missing-flag"), actor="kaizen")
    assert not Rollout.objects.exists()
    assert Change.objects.filter(status=ChangeStatus.IN_REVIEW).count() == 2  # untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"canary_seconds": 0}, "canary phase must last"),
        ({"partial_seconds": -5}, "partial phase must last"),
        ({"full_seconds": 1.5}, "full phase must last"),
        ({"partial_percentage": 0}, "1–99 %"),
        ({"partial_percentage": 100}, "1–99 %"),
        ({"error_rate_threshold": 0}, "threshold must be above 0"),
    ],
)
def test_bad_durations_and_shares_are_refused(issue, make_flag, kwargs, message):
    make_flag(key=KEY)
    change = verified_change(issue=issue)
    with pytest.raises(RolloutError, match=message):
        rollout_start(change=change, actor="kaizen", **kwargs)
    change.refresh_from_db()
    assert change.status == ChangeStatus.IN_REVIEW and not Rollout.objects.exists()
    assert not Flag.objects.get(key=KEY).enabled


def test_the_database_refuses_a_zero_duration_too(start, allow_all):
    rollout, _ = start()
    with pytest.raises(IntegrityError), transaction.atomic():
        Rollout.objects.filter(pk=rollout.pk).update(partial_seconds=0)


def test_other_refusals(start, make_flag, issue, project, allow_all):
    draft = change_create(title="Not verified", severity="P2", actor="alice", issue=issue, flag_key=KEY)
    make_flag(key=KEY)
    with pytest.raises(RolloutError, match="is draft: a rollout starts from in_review"):
        rollout_start(change=draft, actor="kaizen")
    rollout = rollout_start(change=verified_change(issue=issue), actor="kaizen")
    with pytest.raises(RolloutError, match="has been rolled out already"):
        rollout_start(change=Change.objects.get(pk=rollout.change_id), actor="kaizen")
    with pytest.raises(RolloutError, match=f"is being rolled out by {rollout.change.key}"):
        rollout_start(change=verified_change(issue=issue), actor="kaizen")
    engine.rollout_rollback(rollout=rollout, why="test")
    with pytest.raises(RolloutError, match="is killed; release the kill switch first"):
        rollout_start(change=verified_change(issue=issue), actor="kaizen")
    lonely = IssueFactory(project=project)  # nobody with a user id reported it
    make_flag(key="other")
    with pytest.raises(RolloutError, match="No affected user to canary on"):
        rollout_start(change=verified_change(issue=lonely, flag_key="other"), actor="kaizen")


# --- The console ------------------------------------------------------------------------------

CHANGELIST = "/admin/flags/rollout/"


def test_console_lists_rollouts_with_phase_exposure_health_and_reasons(admin_client, start, issue):
    rollout, t0 = start()
    rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY)
    rollout_advance(rollout_id=rollout.pk, expected_phase="partial", now=t0 + CANARY + PARTIAL)
    page = admin_client.get(CHANGELIST + "?state=awaiting").content.decode()
    assert rollout.change.key in page and "partial" in page and "10 %" in page
    assert "0 new occurrence(s) of the watched issue" in page
    assert "100 % exposure is over the 10 % allowed without approval" in page
    detail = admin_client.get(f"{CHANGELIST}{rollout.pk}/change/")
    assert detail.status_code == 200 and "canary" in detail.content.decode()  # the steps inline
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_console_approve_and_roll_back_actions(admin_client, start):
    # Started an hour ago, so the real clock the console uses is past the partial phase's end
    # (and the affected user's report, two hours old, is before every phase).
    rollout, t0 = start(at=timezone.now() - timedelta(hours=1))
    rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=t0 + CANARY)
    rollout_advance(rollout_id=rollout.pk, expected_phase="partial", now=t0 + CANARY + PARTIAL)
    response = admin_client.post(
        CHANGELIST, {"action": "approve_promotion", "_selected_action": [rollout.pk], "why": "go"}
    )
    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.phase == "full" and AuditEntry.objects.get(action="rollout.approve").actor == "admin"
    # Approving again: nothing waits, and the console says so.
    response = admin_client.post(
        CHANGELIST, {"action": "approve_promotion", "_selected_action": [rollout.pk], "why": ""}, follow=True
    )
    assert "is not awaiting approval" in response.content.decode()

    admin_client.post(CHANGELIST, {"action": "roll_back_now", "_selected_action": [rollout.pk], "why": "hunch"})
    rollout.refresh_from_db()
    assert rollout.phase == "rolled_back" and Flag.objects.get(pk=rollout.flag_id).killed
    assert AuditEntry.objects.get(action="rollout.rollback").detail == {"from": "full", "why": "hunch"}


def test_console_edits_the_policy_and_audits_it(admin_client, project):
    url = "/admin/flags/promotionpolicy/add/"
    fields = {"max_auto_risk": "medium", "max_auto_exposure": 25, "daily_llm_budget_usd": "5.00",
              "blocked_from_hour": 22, "blocked_to_hour": 7}  # fmt: skip
    assert admin_client.post(url, fields).status_code == 302
    policy = PromotionPolicy.objects.get()
    assert (policy.project, policy.max_auto_exposure, policy.updated_by) == (None, 25, "admin")
    entry = AuditEntry.objects.get(action="policy.create")
    assert entry.target == "policy:default" and entry.detail["after"]["max_auto_exposure"] == "25"

    second_default = admin_client.post(url, {**fields, "max_auto_exposure": 50})
    assert second_default.status_code == 200 and PromotionPolicy.objects.count() == 1
    assert "There is a policy for this project already" in second_default.content.decode()
    one_end = admin_client.post(url, {**fields, "project": project.pk, "blocked_to_hour": ""})
    assert "Give both ends of the blocked hours" in one_end.content.decode()

    change_url = f"/admin/flags/promotionpolicy/{policy.pk}/change/"
    assert admin_client.post(change_url, {**fields, "max_auto_exposure": 100}).status_code == 302
    update = AuditEntry.objects.get(action="policy.update")
    assert update.detail == {"before": {"max_auto_exposure": "25"}, "after": {"max_auto_exposure": "100"}}


# --- A real worker ----------------------------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _worker(log: Path, **env) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": _database_url(),
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
