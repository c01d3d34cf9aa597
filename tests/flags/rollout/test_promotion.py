"""The promotion policy and the owner's approval, and the bad input a rollout refuses."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import IntegrityError, transaction

from flags.models import Flag, PromotionPolicy, Rollout, RolloutStep
from flags.rollout import engine, promotion
from flags.rollout.engine import Outcome, RolloutError, rollout_advance, rollouts_sweep
from flags.rollout.start import rollout_start
from healing.changes.lifecycle import change_create
from healing.models import AuditEntry, Change, ChangeStatus
from tests.factories import IssueFactory
from tests.flags.rollout.support import CANARY, KEY, PARTIAL, verified_change

pytestmark = pytest.mark.django_db


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
