"""Remediation plans: validation, running them, undoing them."""

import pytest

from flags.models import Flag
from healing.models import AuditEntry, RemediationRun, RiskLevel
from healing.remediation import (
    ACTIONS,
    Action,
    Outcome,
    RemediationError,
    RemediationPlanError,
    plan_risk,
    remediation_plan_run,
    remediation_plan_validate,
    remediation_undo,
)
from tests.healing.remediation.support import override_of

pytestmark = pytest.mark.django_db


# --- Plan validation -----------------------------------------------------------------------------


def test_plan_validation_names_every_problem_with_its_step():
    plan = [
        {"action": "flag_enable_for_user", "params": {"flag": "ok-flag"}},
        {"action": "flag_nuke", "params": {}},
        {"action": "flag_set_rollout", "params": {"flag": "x", "percentage": 101}},
        {"action": "flag_kill", "params": {"flag": "x", "force": True}},
        {"action": "flag_kill"},
        "flag_kill",
    ]
    with pytest.raises(RemediationPlanError) as caught:
        remediation_plan_validate(plan)
    problems = caught.value.problems
    assert len(problems) == 5
    assert problems[0].startswith('step 2: unknown action "flag_nuke" (known: cache_clear, celery_task_retry')
    assert problems[1].startswith("step 3 (flag_set_rollout): percentage:")
    assert problems[2] == "step 4 (flag_kill): force: Extra inputs are not permitted"
    assert problems[3] == "step 5 (flag_kill): flag: Field required"
    assert problems[4].startswith('step 6: expected {"action"')


def test_a_plan_must_be_a_list():
    with pytest.raises(RemediationPlanError, match="a plan is a list"):
        remediation_plan_validate({"action": "flag_kill"})
    assert remediation_plan_validate([]) == []


def test_plan_risk_is_the_highest_step_risk():
    low = remediation_plan_validate([{"action": "flag_enable_for_user", "params": {"flag": "a"}}])
    high = remediation_plan_validate([*[{"action": "flag_enable_for_user", "params": {"flag": "a"}}],
                                      {"action": "flag_kill", "params": {"flag": "a"}}])  # fmt: skip
    assert (plan_risk(low), plan_risk(high), plan_risk([])) == ("low", "high", "low")


# --- Running plans -------------------------------------------------------------------------------


def test_a_plan_runs_its_steps_in_order(context, flag):
    plan = [
        {"action": "flag_enable_for_user", "params": {"flag": "generate-retry"}},
        {"action": "flag_set_rollout", "params": {"flag": "generate-retry", "percentage": 10}},
    ]
    report = remediation_plan_run(plan=plan, context=context, actor="kaizen")
    assert report.ok and report.summary == "2 step(s) done."
    assert [(r.step, r.action, r.outcome) for r in report.runs] == [
        (1, "flag_enable_for_user", "ok"), (2, "flag_set_rollout", "ok"),
    ]  # fmt: skip
    assert {r.plan_run for r in report.runs} == {report.plan_run}
    assert AuditEntry.objects.get(action="remediation.plan").detail["ok"] is True


def test_a_failing_step_undoes_the_steps_before_it_newest_first(settings, context, flag):
    settings.KAIZEN_REMEDIATION_CACHE_PREFIXES = ["shop:"]
    plan = [
        {"action": "flag_enable_for_user", "params": {"flag": "generate-retry"}},
        {"action": "cache_clear", "params": {"keys": ["shop:a"]}},
        {"action": "flag_set_rollout", "params": {"flag": "generate-retry", "percentage": 50}},
        {"action": "flag_kill", "params": {"flag": "missing-flag"}},
        {"action": "flag_disable_for_user", "params": {"flag": "generate-retry"}},
    ]
    report = remediation_plan_run(plan=plan, context=context, actor="kaizen")
    assert not report.ok
    assert (report.failed.step, report.failed.action) == (4, "flag_kill")
    assert len(report.runs) == 4  # step 5 never ran
    assert [(u.step, u.action, u.outcome) for u in report.undone] == [
        (3, "flag_set_rollout", "ok"), (1, "flag_enable_for_user", "ok"),
    ]  # fmt: skip
    assert report.not_undone == ["step 2 (cache_clear): a cleared cache refills itself"]
    assert Flag.objects.get(pk=flag.pk).rollout_percentage == 0 and override_of(flag) is None
    assert "Step 4 (flag_kill) failed: No flag" in report.summary and "Undone: step 3, step 1." in report.summary
    plan_entry = AuditEntry.objects.get(action="remediation.plan")
    assert plan_entry.detail["ok"] is False and plan_entry.detail["summary"] == report.summary
    # Every run and undo is a row: 4 runs + 2 undos.
    assert RemediationRun.objects.filter(plan_run=report.plan_run).count() == 6


def test_an_action_that_crashes_is_a_failed_step_and_rolls_back(monkeypatch, context, flag):
    class Boom(Action):
        name, risk, summary = "boom", RiskLevel.LOW, "crashes"

        def run(self, params, context):
            raise KeyError("surprise")

    monkeypatch.setitem(ACTIONS, "boom", Boom())
    plan = [{"action": "flag_enable_for_user", "params": {"flag": "generate-retry"}}, {"action": "boom", "params": {}}]
    report = remediation_plan_run(plan=plan, context=context, actor="kaizen")
    assert report.failed.error == "KeyError: 'surprise'"
    assert override_of(flag) is None


def test_a_failed_undo_is_reported_and_can_be_retried(monkeypatch, context):
    class Fragile(Action):
        name, risk, summary = "fragile", RiskLevel.LOW, "undo fails once"
        undo_calls = 0

        def run(self, params, context):
            return Outcome(ok=True, detail="done", undo_data={"x": 1})

        def undo(self, undo_data, context):
            type(self).undo_calls += 1
            if self.undo_calls == 1:
                raise RemediationError("the service is down")
            return Outcome(ok=True, detail="undone")

    class Fails(Action):
        name, risk, summary = "fails", RiskLevel.LOW, "always fails"

        def run(self, params, context):
            return Outcome(ok=False, detail="no luck")

    monkeypatch.setitem(ACTIONS, "fragile", Fragile())
    monkeypatch.setitem(ACTIONS, "fails", Fails())
    report = remediation_plan_run(plan=[{"action": "fragile"}, {"action": "fails"}], context=context, actor="kaizen")
    assert report.failed.error == "no luck"
    assert report.not_undone == ["step 1 (fragile): its undo failed: the service is down"]
    first = report.runs[0]
    first.refresh_from_db()
    assert first.undone_at is None  # still in place
    assert remediation_undo(run=first, actor="bob").outcome == "ok"


def test_an_invalid_plan_runs_nothing(context, flag):
    plan = [{"action": "flag_enable_for_user", "params": {"flag": "generate-retry"}}, {"action": "nope"}]
    with pytest.raises(RemediationPlanError):
        remediation_plan_run(plan=plan, context=context, actor="kaizen")
    assert not RemediationRun.objects.exists() and override_of(flag) is None
