"""A fix's steps pass the owner's promotion policy before they change what users get, and an
aborted Change leaves nothing of itself applied."""

import pytest

from flags.models import Flag, Override, PromotionPolicy
from flags.rollout.promotion import step_check
from healing.demo import product as demo
from healing.loop import llm_diagnosis as diagnosis
from healing.loop.patterns import forget_patterns
from healing.models import (
    AuditEntry,
    Change,
    ChangeStatus,
    ErrorPattern,
    Project,
    RemediationRun,
    RiskLevel,
    Stage,
)
from tests.healing.loop.test_pipeline import GENERATE, demo_call, report, stages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    settings.KAIZEN_ROLLOUT_CANARY_SECONDS = settings.KAIZEN_ROLLOUT_PARTIAL_SECONDS = 1
    settings.KAIZEN_ROLLOUT_FULL_SECONDS = 1
    return sandbox


def generate_fix_is(plan) -> None:
    """The generate pattern proposes `plan` (as a diagnosis might)."""
    ErrorPattern.objects.filter(name__icontains="generate").update(remediation=plan)
    forget_patterns()


def flag(key: str) -> Flag:
    return Flag.objects.get(project__slug="demo", key=key)


def test_wide_steps_do_not_run_before_verification_and_nothing_stays_when_it_fails(sandbox):
    """The reported case: flag_kill and flag_set_rollout 100 both ran before verification, and
    stayed when it aborted the Change."""
    generate_fix_is([
        {"action": "flag_kill", "params": {"flag": demo.FLAG_GENERATE_RETRY}},
        {"action": "flag_set_rollout", "params": {"flag": demo.FLAG_GENERATE_RETRY, "percentage": 100}},
    ])  # fmt: skip
    issue = report(GENERATE)

    change = Change.objects.get(issue=issue)
    assert (issue.stage, change.status) == (Stage.ABORTED, ChangeStatus.ABORTED)
    retry = flag(demo.FLAG_GENERATE_RETRY)
    assert (retry.killed, retry.rollout_percentage) == (False, 0)  # nobody's product changed
    assert not RemediationRun.objects.filter(change=change).exists()


def test_a_step_for_the_user_runs_before_verification_and_is_undone_when_the_change_aborts(sandbox):
    generate_fix_is([
        {"action": "flag_disable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX}},  # for alice, now
        {"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX}},  # the wrong fix: fails
    ])  # fmt: skip
    issue = report(GENERATE)

    change = Change.objects.get(issue=issue)
    assert (issue.stage, change.status) == (Stage.ABORTED, ChangeStatus.ABORTED)
    ran = RemediationRun.objects.get(change=change, undo_of__isnull=True)
    undo = RemediationRun.objects.get(change=change, undo_of=ran)
    assert (ran.action, ran.user_id, undo.outcome) == ("flag_disable_for_user", "alice", "ok")
    assert ran.undone_at is not None
    assert not Override.objects.filter(flag=flag(demo.FLAG_SESSION_FIX), user_id="alice").exists()
    entry = AuditEntry.objects.get(action="change.undo_steps", target=f"change:{change.key}")
    assert entry.detail["undone"] == [ran.pk] and entry.detail["not_undone"] == []


def test_steps_are_undone_newest_first(sandbox):
    generate_fix_is([
        {"action": "flag_disable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX}},
        {"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX, "user_id": "alice"}},
        {"action": "flag_disable_for_user", "params": {"flag": demo.FLAG_GENERATE_RETRY}},
    ])  # fmt: skip
    PromotionPolicy.objects.filter(project__slug="demo").update(max_auto_risk=RiskLevel.LOW)
    issue = report(GENERATE)  # flag_enable_for_user is the rollout's step; the other two run now

    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.ABORTED
    runs = list(RemediationRun.objects.filter(change=change, undo_of__isnull=True).order_by("started_at", "id"))
    undos = list(RemediationRun.objects.filter(change=change, undo_of__isnull=False).order_by("started_at", "id"))
    assert [run.params["flag"] for run in runs] == [demo.FLAG_SESSION_FIX, demo.FLAG_GENERATE_RETRY]
    assert [undo.undo_of_id for undo in undos] == [runs[1].pk, runs[0].pk]
    assert not Override.objects.filter(user_id="alice").exists()


def test_a_step_the_policy_does_not_allow_waits_for_the_owner(sandbox, admin_client):
    generate_fix_is([
        {"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_GENERATE_RETRY}},
        {"action": "flag_kill", "params": {"flag": demo.FLAG_SESSION_FIX}},  # high risk: the demo allows medium
    ])  # fmt: skip
    issue = report(GENERATE)

    change = Change.objects.get(issue=issue)
    assert (issue.stage, change.status) == (Stage.ESCALATED, ChangeStatus.IN_REVIEW)  # verified, then held
    assert "Waiting for the owner's approval: step 2 (flag_kill): risk high is above medium" in (
        issue.events.last().detail
    )
    assert change.scorecard["held"][0]["action"] == "flag_kill"
    assert not flag(demo.FLAG_SESSION_FIX).killed

    approve = {"action": "approve_held_steps", "_selected_action": [change.pk], "why": ""}
    assert admin_client.post("/admin/healing/change/", approve).status_code == 302

    issue.refresh_from_db()
    change.refresh_from_db()
    assert flag(demo.FLAG_SESSION_FIX).killed
    assert (issue.stage, change.status) == (Stage.DEPLOYED, ChangeStatus.CANARY)  # and on to its rollout
    assert RemediationRun.objects.get(change=change, action="flag_kill").actor == "admin"
    assert AuditEntry.objects.filter(action="change.approve_held", actor="admin").exists()
    admin_client.post("/admin/healing/change/", approve)  # a second click runs nothing
    assert RemediationRun.objects.filter(change=change, action="flag_kill").count() == 1
    assert demo_call("POST", "/demo/api/generate", user="alice", body={"prompt": "a cat"}).status_code == 200
    assert stages(issue)[-2:] == ["escalated", "deployed"]


def test_aborting_a_held_change_in_the_console_undoes_what_it_applied(sandbox, admin_client):
    generate_fix_is([
        {"action": "flag_disable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX}},  # for alice, now
        {"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_GENERATE_RETRY}},
        {"action": "flag_kill", "params": {"flag": demo.FLAG_SESSION_FIX}},  # held
    ])  # fmt: skip
    issue = report(GENERATE)
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.IN_REVIEW
    assert Override.objects.filter(flag=flag(demo.FLAG_SESSION_FIX), user_id="alice", enabled=False).exists()

    abort = {"action": "move_to_aborted", "_selected_action": [change.pk], "why": "not this way"}
    assert admin_client.post("/admin/healing/change/", abort).status_code == 302

    change.refresh_from_db()
    assert change.status == ChangeStatus.ABORTED
    assert not Override.objects.filter(flag=flag(demo.FLAG_SESSION_FIX), user_id="alice").exists()
    assert not flag(demo.FLAG_SESSION_FIX).killed
    undo = RemediationRun.objects.get(change=change, undo_of__isnull=False)
    assert (undo.action, undo.actor, undo.outcome) == ("flag_disable_for_user", "admin", "ok")


def test_the_risk_gate_holds_steps_to_risk_and_their_reach():
    project = Project.objects.create(slug="gated", name="Gated")
    PromotionPolicy.objects.create(project=project, max_auto_risk="medium", max_auto_exposure=10)

    for_user = step_check(project_id=project.pk, risk=RiskLevel.MEDIUM, exposure=0)
    too_risky = step_check(project_id=project.pk, risk=RiskLevel.HIGH, exposure=0)
    too_wide = step_check(project_id=project.pk, risk=RiskLevel.LOW, exposure=100)

    assert for_user.allowed
    assert too_risky.reasons == ("risk high is above medium, the highest run without approval",)
    assert too_wide.reasons == ("100 % exposure is over the 10 % allowed without approval",)


def test_there_is_one_risk_level():
    from flags import models as flag_models
    from healing import models as healing_models
    from healing.remediation import ACTIONS

    assert flag_models.RiskLevel is healing_models.RiskLevel
    assert diagnosis.CodePatch.model_fields["risk"].annotation is RiskLevel
    assert {type(action.risk) for action in ACTIONS.values()} == {RiskLevel}
    patch = diagnosis.CodePatch.model_validate({"diff": "--- a\n+++ b\n@@ -1 +1 @@\n", "files": ["a"], "risk": "low"})
    assert patch.risk is RiskLevel.LOW
