"""The healing loop end to end on the demo product: report → diagnosis → Change → verification
against the live sandbox → canary → rollout → resolved, and the ways it stops short."""

from datetime import timedelta

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from flags.models import PromotionPolicy, Rollout
from flags.rollout.engine import rollouts_sweep
from healing.demo import product as demo
from healing.loop import pipeline
from healing.models import (
    AuditEntry,
    Change,
    ChangeStatus,
    ErrorPattern,
    Incident,
    Issue,
    IssueEvent,
    Project,
    RemediationRun,
    Stage,
)
from tests.processes import database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(sandbox, settings):
    """The shared sandbox, plus direct ingest and 1-second rollout phases."""
    settings.KAIZEN_INGEST_MODE = "direct"
    settings.KAIZEN_ROLLOUT_CANARY_SECONDS = settings.KAIZEN_ROLLOUT_PARTIAL_SECONDS = 1
    settings.KAIZEN_ROLLOUT_FULL_SECONDS = 1
    # Promotions with no human at any hour and exposure, so the test does not depend on the clock.
    PromotionPolicy.objects.update_or_create(
        project=None, defaults={"max_auto_exposure": 100, "blocked_from_hour": None, "blocked_to_hour": None}
    )
    return sandbox


def demo_call(method, path, *, user, body=None, **headers):
    client = Client()
    call = getattr(client, method.lower())
    if body is not None:
        return call(path, data=orjson.dumps(body), content_type="application/json", HTTP_X_DEMO_USER=user, **headers)
    return call(path, HTTP_X_DEMO_USER=user, **headers)


def report(payload) -> Issue:
    key = Project.objects.get(slug="demo").keys.get().public_key
    response = Client().post(
        "/api/v1/issues", data=orjson.dumps(payload), content_type="application/json", HTTP_X_KAIZEN_KEY=key
    )
    assert response.status_code == 202, response.content
    issue = Issue.objects.get(pk=response.json()["issue_id"])
    pipeline.issue_process(issue_id=str(issue.pk))
    issue.refresh_from_db()
    return issue


def stages(issue):
    return list(IssueEvent.objects.filter(issue=issue).values_list("stage", flat=True))


def finish_rollout():
    """Move the clock past each 1-second phase, as the sweep would."""
    later = timezone.now()
    for _ in range(4):
        later += timedelta(seconds=2)
        rollouts_sweep(now=later)


GENERATE = {
    "type": "SILENT_FAILURE",
    "message": "Clicked Generate and nothing happened",
    "route": "/demo/",
    "user": {"id": "alice"},
    "request": {
        "method": "POST",
        "path": "/demo/api/generate",
        "headers": {"X-Demo-User": "alice"},
        "body": {"prompt": "a cat"},
        "status": 202,
    },
}


CREDITS = {
    "type": "BILLING_ISSUE",
    "message": "I paid for 100 credits but my balance still shows 0",
    "user": {"id": "alice"},
    "request": {"method": "GET", "path": "/demo/api/credits", "headers": {"X-Demo-User": "alice"}, "status": 200},
    "state": {"credits": 0, "pending": 100},
}


def test_generate_silent_failure_is_fixed_for_the_user_then_everyone(sandbox):
    assert demo_call("POST", "/demo/api/generate", user="alice", body={"prompt": "a cat"}).status_code == 202
    issue = report(GENERATE)
    assert stages(issue) == ["detected", "diagnosing", "root_cause_found", "fixing", "verifying", "deployed"]
    assert (
        IssueEvent.objects.filter(issue=issue).last().message
        == "**Fixed.** Thanks for your patience. Please try again."
    )
    change = Change.objects.get(issue=issue)
    assert (change.status, change.flag_key) == (ChangeStatus.CANARY, demo.FLAG_GENERATE_RETRY)
    assert change.scorecard["verification"]["summary"] == "10/10 replays passed"
    assert change.scorecard["verification"]["level"] == "pattern"
    assert Rollout.objects.get(change=change).phase == "canary"
    # Fixed for the affected user only, for now.
    assert demo_call("POST", "/demo/api/generate", user="alice", body={"prompt": "a cat"}).status_code == 200
    assert demo_call("POST", "/demo/api/generate", user="bob", body={"prompt": "a dog"}).status_code == 202

    finish_rollout()
    issue.refresh_from_db()
    change.refresh_from_db()
    assert (issue.stage, change.status) == (Stage.RESOLVED, ChangeStatus.COMPLETE)
    assert demo_call("POST", "/demo/api/generate", user="bob", body={"prompt": "a dog"}).status_code == 200
    assert Incident.objects.filter(change=change).exists()


def test_paid_credits_are_resynced_through_the_owner_webhook(sandbox):
    demo_call("POST", "/demo/api/purchase", user="alice", body={"credits": 100})
    issue = report(CREDITS)
    # The webhook fixed alice's balance, not whatever lost her purchase: mitigated, not resolved.
    assert (issue.stage, issue.resolved_at) == (Stage.MITIGATED, None)
    assert IssueEvent.objects.filter(issue=issue).last().message.startswith("**Fixed.**")  # for alice
    run = RemediationRun.objects.get(action="webhook_call")
    assert run.outcome == "ok"
    assert demo_call("GET", "/demo/api/credits", user="alice").json() == {"credits": 100, "pending": 0}
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.COMPLETE
    assert Incident.objects.get(change=change).outcome == "mitigated"


def test_session_expired_after_login_is_fixed_for_the_user(sandbox):
    token = demo_call("POST", "/demo/api/login", user="", body={"user": "alice"}).json()["token"]
    issue = report(
        {
            "type": "AUTH_ISSUE",
            "message": "Session expired right after login",
            "user": {"id": "alice"},
            "request": {
                "method": "GET",
                "path": "/demo/api/me",
                "status": 401,
                "headers": {"X-Demo-User": "alice"},  # what the page captures: never the token
            },
        }  # fmt: skip
    )
    assert issue.stage == Stage.DEPLOYED
    me = demo_call("GET", "/demo/api/me", user="alice", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert me.status_code == 200


def test_a_fix_that_does_not_verify_is_aborted_and_escalated(sandbox):
    ErrorPattern.objects.filter(name__icontains="generate").update(
        remediation=[{"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_SESSION_FIX}}]  # the wrong fix
    )
    from healing.loop.patterns import forget_patterns

    forget_patterns()
    issue = report(GENERATE)
    assert stages(issue)[-1] == "aborted"
    assert issue.severity == issue.base_severity  # a fix that failed in the sandbox hurt no one
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.ABORTED
    assert change.scorecard["verification"]["summary"].startswith("0/10")
    assert AuditEntry.objects.filter(action="owner.alert", target=f"issue:{issue.pk}").exists()
    assert ErrorPattern.objects.get(name__icontains="generate").failures == 1
    assert not Rollout.objects.exists()  # nobody got the wrong fix


def test_an_unknown_problem_without_an_llm_is_escalated(sandbox):
    issue = report({"type": "ERROR", "message": "Totally new kind of failure", "user": {"id": "alice"}})
    assert stages(issue)[-1] == "escalated"
    assert "ANTHROPIC_API_KEY" in IssueEvent.objects.filter(issue=issue).last().detail
    assert not Change.objects.exists()


def test_a_redelivered_task_changes_nothing(sandbox):
    issue = report(GENERATE)
    before = stages(issue)
    assert pipeline.issue_process(issue_id=str(issue.pk)) is False
    assert stages(issue) == before
    assert Change.objects.count() == 1


def test_a_second_issue_with_the_same_fix_rides_the_running_rollout(sandbox):
    first = report({**GENERATE, "fingerprint": ["generate-a"]})
    second = report({**GENERATE, "fingerprint": ["generate-b"], "user": {"id": "bob"},
                     "request": {**GENERATE["request"], "headers": {"X-Demo-User": "bob"}}})  # fmt: skip
    assert (first.stage, second.stage) == (Stage.DEPLOYED, Stage.DEPLOYED)
    assert Rollout.objects.count() == 1  # one flag, one rollout
    assert demo_call("POST", "/demo/api/generate", user="bob", body={"prompt": "x"}).status_code == 200
    finish_rollout()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stage, second.stage) == (Stage.RESOLVED, Stage.RESOLVED)
    assert set(Change.objects.values_list("status", flat=True)) == {ChangeStatus.COMPLETE}


def test_p0_and_p1_incidents_get_a_draft_rca_from_a_task_of_its_own(sandbox, published):
    from healing import tasks
    from healing.models import RootCauseAnalysis

    demo_call("POST", "/demo/api/purchase", user="alice", body={"credits": 100})
    mitigated = report(CREDITS)  # P1: its cause still needs a person, who gets the write-up
    escalated = report({"type": "ERROR", "message": "Totally new kind of failure", "user": {"id": "bob"}})
    login = report({"type": "AUTH_ISSUE", "message": "Totally new login failure", "user": {"id": "carol"}})
    assert (escalated.stage, escalated.severity) == (Stage.ESCALATED, "P2")  # escalation is not impact
    assert (login.stage, login.severity) == (Stage.ESCALATED, "P1")
    # The issue's worker moved on: the drafts wait on the urgent group's queue.
    assert not RootCauseAnalysis.objects.exists()
    sent = [(name, args) for name, args, _ in published("ops") if name == "healing.tasks.draft_rca"]
    change = Change.objects.get(issue=mitigated)
    assert sent == [("healing.tasks.draft_rca", [str(mitigated.pk), change.pk]),
                    ("healing.tasks.draft_rca", [str(login.pk), None])]  # fmt: skip
    for _, args in sent + sent:  # a redelivered task finds its draft written
        tasks.draft_rca(*args)
    assert RootCauseAnalysis.objects.count() == 2
    drafts = {rca.issue_id: rca for rca in RootCauseAnalysis.objects.all()}
    assert set(drafts) == {mitigated.pk, login.pk}  # P0/P1 only: the P2 one gets none
    assert "## Root cause" in drafts[login.pk].draft
    assert drafts[mitigated.pk].change == Change.objects.get(issue=mitigated)


def test_a_first_seen_problem_is_diagnosed_by_the_llm_and_the_next_one_by_the_learned_pattern(
    sandbox, settings, monkeypatch
):
    from kaizen_site import llm
    from kaizen_site.models import LLMCall
    from tests.anthropic_fake import FakeAPI, ok
    from tests.healing.loop.test_diagnosis import answer, message

    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.KAIZEN_LLM_MODEL = "claude-sonnet-5"
    ErrorPattern.objects.update(enabled=False)  # nothing known: the first one needs the LLM
    fix = [{"action": "flag_enable_for_user", "params": {"flag": demo.FLAG_GENERATE_RETRY}}]
    api = FakeAPI(ok(message(answer(remediation_plan=fix, code_patch=None))))
    monkeypatch.setattr(llm, "_shared_client", lambda key, timeout, retries: llm._build(
        key=key, timeout=timeout, retries=retries, http_client=api.client))  # fmt: skip

    first = report({**GENERATE, "fingerprint": ["first"]})
    assert first.stage == Stage.DEPLOYED
    assert Change.objects.get(issue=first).scorecard["verification"]["level"] == "llm"
    assert LLMCall.objects.filter(purpose="diagnosis", valid=True).count() == 1
    finish_rollout()
    first.refresh_from_db()
    assert first.stage == Stage.RESOLVED  # ...and learned
    # The diagnosis is kept on the issue for the console: root cause, confidence and hypotheses.
    assert first.diagnosis["level"] == "llm" and first.diagnosis["confidence"] == 0.82
    assert [h["verdict"] for h in first.diagnosis["hypotheses"]] == ["supported", "refuted"]

    second = report({**GENERATE, "fingerprint": ["second"], "user": {"id": "carol"},
                     "request": {**GENERATE["request"], "headers": {"X-Demo-User": "carol"}}})  # fmt: skip
    assert second.stage == Stage.DEPLOYED
    assert Change.objects.get(issue=second).scorecard["verification"]["level"] == "pattern"
    assert LLMCall.objects.filter(purpose="diagnosis").count() == 1  # no second diagnosis call


@pytest.mark.slow
def test_a_real_worker_heals_the_issue_end_to_end(sandbox, settings):
    """The report goes to the P1 queue on Redis; a real worker diagnoses, verifies against the
    live sandbox and rolls the fix out (1-second phases) until the issue is resolved."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": database_url(),
        "KAIZEN_DEMO": "1",
        "KAIZEN_SANDBOX_MODE": "1",
        "KAIZEN_SANDBOX_SECRET": settings.KAIZEN_SANDBOX_SECRET,
        "KAIZEN_SANDBOX_URL": settings.KAIZEN_SANDBOX_URL,
        "KAIZEN_ROLLOUT_CANARY_SECONDS": "1",
        "KAIZEN_ROLLOUT_PARTIAL_SECONDS": "1",
        "KAIZEN_ROLLOUT_FULL_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "kaizen_site", "worker", "-Q", "P0,P1,P2,P3,ops", "-c", "1", "-P", "solo",
         "--loglevel", "WARNING"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        key = Project.objects.get(slug="demo").keys.get().public_key
        response = Client().post(
            "/api/v1/issues", data=orjson.dumps(GENERATE), content_type="application/json", HTTP_X_KAIZEN_KEY=key
        )
        issue_id = response.json()["issue_id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stage = Issue.objects.filter(pk=issue_id).values_list("stage", flat=True).first()
            if stage in (Stage.RESOLVED, Stage.ABORTED, Stage.ESCALATED):
                break
            time.sleep(0.3)
    finally:
        worker.terminate()
        worker.wait(20)
    issue = Issue.objects.get(pk=issue_id)
    assert issue.stage == Stage.RESOLVED, stages(issue)
    assert stages(issue)[:6] == ["detected", "diagnosing", "root_cause_found", "fixing", "verifying", "deployed"]
    assert Change.objects.get(issue=issue).status == ChangeStatus.COMPLETE
    assert demo_call("POST", "/demo/api/generate", user="zoe", body={"prompt": "x"}).status_code == 200
