"""Remediation actions: every built-in's run and undo, plan validation, rollback of a plan whose
step fails, the owner's webhooks (faked at the HTTP boundary), and the console's pages."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import requests
import responses
from django.core.cache import cache
from django.utils import timezone

from flags.models import Flag, Override
from flags.services import flag_create, flag_kill, override_set
from healing.models import AuditEntry, RemediationHook, RemediationOutcome, RemediationRun, RiskLevel
from healing.remediation import (
    ACTIONS,
    Action,
    Outcome,
    RemediationContext,
    RemediationError,
    RemediationPlanError,
    plan_risk,
    remediation_plan_run,
    remediation_plan_validate,
    remediation_step_run,
    remediation_undo,
)
from healing.remediation.json_schema import SchemaError, schema_parse, schema_problems
from tests.factories import IssueFactory, ProjectFactory

pytestmark = pytest.mark.django_db

HOOK_URL = "https://owner.example.com/kaizen/resync"
HOOK_SECRET = "a-long-enough-hook-secret"


@pytest.fixture
def issue(project):
    return IssueFactory(project=project, type="SILENT_FAILURE")


@pytest.fixture
def context(issue):
    return RemediationContext(issue=issue, user_id="alice")


@pytest.fixture
def flag(project):
    return flag_create(project=project, key="generate-retry", enabled=True, actor="test")


def run(action: str, params: dict, context: RemediationContext) -> RemediationRun:
    [step] = remediation_plan_validate([{"action": action, "params": params}])
    return remediation_step_run(step=step, context=context)


def override_of(flag, user_id="alice"):
    return Override.objects.filter(flag=flag, user_id=user_id).first()


# --- Flags -------------------------------------------------------------------------------------


def test_flag_enable_for_user_forces_it_on_for_the_affected_user_and_undo_removes_it(context, flag, issue):
    done = run("flag_enable_for_user", {"flag": "generate-retry"}, context)
    assert (done.outcome, done.risk, done.user_id, done.issue_id) == ("ok", "low", "alice", issue.pk)
    assert override_of(flag).enabled is True
    assert done.undo_data == {"flag_id": flag.pk, "user_id": "alice", "before": None}
    assert done.finished_at is not None and done.actor == "kaizen"
    entry = AuditEntry.objects.get(action="remediation.run")
    assert entry.target == f"remediation:{done.pk}" and entry.detail["ok"] is True

    undo = remediation_undo(run=done, actor="bob")
    assert (undo.outcome, undo.undo_of, undo.actor) == ("ok", done, "bob")
    assert override_of(flag) is None
    done.refresh_from_db()
    assert done.undone_at is not None
    assert remediation_undo(run=done, actor="bob") is None  # once only
    assert AuditEntry.objects.filter(action="remediation.undo").count() == 1


def test_undo_puts_back_the_override_the_user_had(context, flag):
    expires = timezone.now() + timedelta(days=1)
    override_set(flag=flag, user_id="alice", enabled=False, actor="bob", why="opted out", expires_at=expires)
    done = run("flag_enable_for_user", {"flag": "generate-retry"}, context)
    assert override_of(flag).enabled is True
    remediation_undo(run=done, actor="kaizen")
    back = override_of(flag)
    assert (back.enabled, back.reason, back.expires_at) == (False, "opted out", expires)


def test_flag_disable_for_a_named_user(context, flag):
    done = run("flag_disable_for_user", {"flag": "generate-retry", "user_id": "carol"}, context)
    assert done.outcome == "ok" and override_of(flag, "carol").enabled is False
    assert override_of(flag, "alice") is None
    remediation_undo(run=done, actor="kaizen")
    assert override_of(flag, "carol") is None


def test_a_user_step_without_a_user_fails_clearly(issue, flag):
    done = run("flag_enable_for_user", {"flag": "generate-retry"}, RemediationContext(issue=issue))
    assert done.outcome == "failed" and "No user" in done.error and done.undo_data is None
    assert not Override.objects.exists()


def test_a_missing_flag_fails_clearly(context, project):
    done = run("flag_enable_for_user", {"flag": "no-such-flag"}, context)
    assert done.outcome == "failed" and f'No flag "no-such-flag" in project {project.slug}' in done.error


def test_flag_set_rollout_and_back(context, flag):
    done = run("flag_set_rollout", {"flag": "generate-retry", "percentage": 10}, context)
    assert (done.outcome, done.risk) == ("ok", "medium")
    assert Flag.objects.get(pk=flag.pk).rollout_percentage == 10
    remediation_undo(run=done, actor="kaizen")
    assert Flag.objects.get(pk=flag.pk).rollout_percentage == 0
    same = run("flag_set_rollout", {"flag": "generate-retry", "percentage": 0}, context)
    assert same.outcome == "ok" and same.undo_data is None  # nothing changed, nothing to undo


def test_flag_kill_and_revive(context, flag):
    done = run("flag_kill", {"flag": "generate-retry"}, context)
    assert (done.outcome, done.risk) == ("ok", "high")
    assert Flag.objects.get(pk=flag.pk).killed
    remediation_undo(run=done, actor="kaizen")
    assert not Flag.objects.get(pk=flag.pk).killed


def test_killing_a_killed_flag_leaves_nothing_to_undo(context, flag):
    flag_kill(flag=flag, actor="bob", why="incident")
    done = run("flag_kill", {"flag": "generate-retry"}, context)
    assert done.outcome == "ok" and done.undo_data is None
    assert remediation_undo(run=done, actor="kaizen") is None
    assert Flag.objects.get(pk=flag.pk).killed  # bob's kill stands


# --- Celery task retry ---------------------------------------------------------------------------


def test_celery_task_retry_sends_an_allowed_task_to_its_queue(context, broker, issue):
    done = run("celery_task_retry", {"task": "healing.tasks.process_issue", "args": [str(issue.pk)], "queue": "P2"},
               context)  # fmt: skip
    assert done.outcome == "ok" and done.undo_data is None
    assert broker.llen("P2") == 1
    message = json.loads(broker.lindex("P2", 0))
    assert message["headers"]["task"] == "healing.tasks.process_issue"
    assert message["headers"]["id"] == done.result["task_id"]


def test_celery_task_retry_refuses_tasks_and_queues_off_the_allow_list():
    with pytest.raises(RemediationPlanError, match="not on the allow-list"):
        remediation_plan_validate([{"action": "celery_task_retry", "params": {"task": "os.system"}}])
    with pytest.raises(RemediationPlanError, match='queue "research" is not allowed'):
        remediation_plan_validate(
            [{"action": "celery_task_retry", "params": {"task": "healing.tasks.process_issue", "queue": "research"}}]
        )


def test_the_owner_extends_the_task_allow_list(settings, context, broker):
    settings.KAIZEN_REMEDIATION_TASKS = {"shop.tasks.sync_orders": ["ops"]}
    done = run("celery_task_retry", {"task": "shop.tasks.sync_orders", "kwargs": {"since": "1h"}}, context)
    assert done.outcome == "ok" and done.result["queue"] == "ops"
    assert broker.llen("ops") == 1


# --- Cache ---------------------------------------------------------------------------------------


def test_cache_clear_deletes_keys_under_an_allowed_prefix(settings, context):
    settings.KAIZEN_REMEDIATION_CACHE_PREFIXES = ["shop:balance:"]
    cache.set("shop:balance:alice", 10)
    cache.set("shop:other", 1)
    done = run("cache_clear", {"keys": ["shop:balance:alice", "shop:balance:bob"]}, context)
    assert done.outcome == "ok" and "1 of 2" in done.detail
    assert done.result == {"cleared": ["shop:balance:alice"], "absent": ["shop:balance:bob"]}
    assert cache.get("shop:balance:alice") is None and cache.get("shop:other") == 1
    assert done.undo_data is None


def test_cache_clear_refuses_keys_outside_the_allow_list(settings):
    with pytest.raises(RemediationPlanError, match="none are configured"):
        remediation_plan_validate([{"action": "cache_clear", "params": {"keys": ["anything"]}}])
    settings.KAIZEN_REMEDIATION_CACHE_PREFIXES = ["shop:balance:"]
    with pytest.raises(RemediationPlanError, match="not under an allowed prefix.*kaizen:demo:account:alice"):
        remediation_plan_validate([{"action": "cache_clear", "params": {"keys": ["kaizen:demo:account:alice"]}}])


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


# --- Webhooks ------------------------------------------------------------------------------------


@pytest.fixture
def hook(project):
    return RemediationHook.objects.create(
        name="resync-credits", project=project, url=HOOK_URL, secret=HOOK_SECRET, timeout_seconds=3,
        param_schema={"type": "object", "properties": {"reason": {"type": "string", "maxLength": 50}},
                      "additionalProperties": False},
    )  # fmt: skip


def signed(body: bytes) -> str:
    return "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


@responses.activate
def test_webhook_success_is_signed_timed_and_recorded(context, hook, issue, project):
    responses.post(HOOK_URL, json={"detail": "credits resynced", "undo": {"restore": 0}})
    done = run("webhook_call", {"hook": "resync-credits", "params": {"reason": "sync delay"}}, context)

    [call] = responses.calls
    body = json.loads(call.request.body)
    assert body["params"] == {"reason": "sync delay"}
    assert (body["hook"], body["user_id"], body["issue"], body["project"]) == (
        "resync-credits", "alice", str(issue.pk), project.slug,
    )  # fmt: skip
    assert call.request.headers["X-Kaizen-Signature"] == signed(call.request.body)
    assert call.request.headers["X-Kaizen-Delivery"] == body["delivery"]
    assert call.request.req_kwargs["timeout"] == (5.0, 3.0)

    assert (done.outcome, done.detail, done.risk) == ("ok", "credits resynced", "medium")
    assert done.result["status"] == 200 and done.result["delivery"] == body["delivery"]
    assert "credits resynced" in done.result["body"]
    assert done.undo_data == {"hook": "resync-credits", "undo": {"restore": 0}, "undo_of": body["delivery"]}


@responses.activate
def test_webhook_undo_hands_back_what_the_hook_gave(context, hook):
    responses.post(HOOK_URL, json={"undo": {"restore": 0}})
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    undo = remediation_undo(run=done, actor="kaizen")
    assert undo.outcome == "ok"
    second = json.loads(responses.calls[1].request.body)
    assert second["undo"] == {"restore": 0} and second["undo_of"] == done.result["delivery"]
    assert "params" not in second
    assert responses.calls[1].request.headers["X-Kaizen-Signature"] == signed(responses.calls[1].request.body)


@responses.activate
def test_webhook_without_undo_in_its_answer_cannot_be_undone(context, hook):
    responses.post(HOOK_URL, json={"user_id": "alice", "credits": 100})
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == "ok" and done.detail == "resync-credits answered 200." and done.undo_data is None


@responses.activate
def test_webhook_timeout_is_a_failed_run(context, hook):
    responses.post(HOOK_URL, body=requests.ReadTimeout("slow"))
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == RemediationOutcome.FAILED
    assert done.error == "resync-credits did not answer within 3 s (transient)"
    assert done.result["delivery"] and "status" not in done.result
    assert AuditEntry.objects.get(action="remediation.run").detail["ok"] is False


@responses.activate
def test_webhook_server_error_is_a_failed_run_with_the_answer_kept(context, hook):
    responses.post(HOOK_URL, status=500, body="database is down" + "x" * 1000)
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == "failed" and done.error == "resync-credits answered HTTP 500 (transient)"
    assert done.result["status"] == 500
    assert done.result["body"].startswith("database is down") and len(done.result["body"]) == 500


@responses.activate
def test_webhook_redirect_is_not_followed(context, hook):
    responses.post(HOOK_URL, status=302, headers={"Location": "https://elsewhere.example.com/"})
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == "failed" and done.error == "resync-credits answered HTTP 302 (permanent)"
    assert len(responses.calls) == 1


@responses.activate
def test_webhook_answer_that_is_not_json_is_a_failed_run(context, hook):
    responses.post(HOOK_URL, body="<html>OK</html>", content_type="text/html")
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == "failed" and done.error == "resync-credits answered 200 but not with JSON (permanent)"
    assert done.result["body"] == "<html>OK</html>"


@responses.activate
def test_webhook_params_must_fit_the_hooks_schema(context, hook):
    done = run("webhook_call", {"hook": "resync-credits", "params": {"reason": 5, "extra": 1}}, context)
    assert done.outcome == "failed"
    assert "params.reason: expected string" in done.error and "params.extra: not allowed" in done.error
    assert not responses.calls
    with pytest.raises(RemediationPlanError, match="expected string"):
        remediation_plan_validate(
            [{"action": "webhook_call", "params": {"hook": "resync-credits", "params": {"reason": 5}}}],
            project=hook.project,
        )


@responses.activate
def test_webhook_is_the_projects_own_before_a_global_one(context, hook, project):
    RemediationHook.objects.create(name="resync-credits", url="https://global.example.com/h", secret=HOOK_SECRET)
    responses.post(HOOK_URL, json={})
    assert run("webhook_call", {"hook": "resync-credits"}, context).outcome == "ok"
    other = RemediationContext(issue=IssueFactory(project=ProjectFactory()), user_id="bob")
    responses.post("https://global.example.com/h", json={})
    assert run("webhook_call", {"hook": "resync-credits"}, other).result["url"] == "https://global.example.com/h"


def test_an_unknown_or_disabled_webhook_fails_clearly(context, hook, project):
    RemediationHook.objects.filter(pk=hook.pk).update(enabled=False)
    done = run("webhook_call", {"hook": "resync-credits"}, context)
    assert done.outcome == "failed" and done.error == 'No enabled webhook "resync-credits" for this project.'
    with pytest.raises(RemediationPlanError, match=f'no enabled webhook "resync-credits" for project {project.slug}'):
        remediation_plan_validate([{"action": "webhook_call", "params": {"hook": "resync-credits"}}], project=project)


# --- The JSON Schema subset ---------------------------------------------------------------------


def test_schema_subset_checks_what_it_supports():
    schema = schema_parse({
        "type": "object", "required": ["user"],
        "properties": {
            "user": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
            "amount": {"type": "integer", "minimum": 1, "maximum": 10},
            "mode": {"enum": ["fast", "safe"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    })  # fmt: skip
    assert schema_problems({"user": "bob", "amount": 3, "mode": "fast", "tags": ["a"]}, schema) == []
    assert schema_problems({"user": "B", "amount": True, "mode": "slow", "tags": [1]}, schema) == [
        "params.user: shorter than 2 characters",
        "params.user: does not match ^[a-z]+$",
        "params.amount: expected integer",
        "params.mode: must be one of ['fast', 'safe']",
        "params.tags[0]: expected string",
    ]
    assert schema_problems({"amount": 11, "user": "bob"}, schema) == ["params.amount: above 10"]
    assert schema_problems({}, schema) == ["params.user: required"]


def test_schema_subset_refuses_keywords_it_would_not_check():
    with pytest.raises(SchemaError, match="oneOf"):
        schema_parse({"oneOf": [{"type": "string"}]})
    with pytest.raises(SchemaError, match="properties.x.format"):
        schema_parse({"properties": {"x": {"type": "string", "format": "email"}}})
    with pytest.raises(SchemaError, match="regular expression"):
        schema_parse({"pattern": "("})


# --- The console ---------------------------------------------------------------------------------


def test_console_never_shows_a_hooks_secret(admin_client, project):
    data = {
        "name": "resync-credits", "project": project.pk, "url": HOOK_URL, "secret": HOOK_SECRET,
        "param_schema": "{}", "timeout_seconds": "5", "enabled": "on",
    }  # fmt: skip
    assert admin_client.post("/admin/healing/remediationhook/add/", data).status_code == 302
    hook = RemediationHook.objects.get()
    assert hook.secret == HOOK_SECRET
    page = admin_client.get(f"/admin/healing/remediationhook/{hook.pk}/change/").content.decode()
    assert HOOK_SECRET not in page

    # Saved again with the box left empty: the secret is kept, and the audit log never holds it.
    assert admin_client.post(f"/admin/healing/remediationhook/{hook.pk}/change/",
                             {**data, "secret": "", "timeout_seconds": "8"}).status_code == 302  # fmt: skip
    hook.refresh_from_db()
    assert (hook.secret, hook.timeout_seconds) == (HOOK_SECRET, 8)
    audit = AuditEntry.objects.filter(action__startswith="hook.").order_by("created_at")
    assert [entry.action for entry in audit] == ["hook.create", "hook.update"]
    assert all(HOOK_SECRET not in json.dumps(entry.detail) for entry in audit)
    assert "secret" not in audit[1].detail["after"]


def test_console_refuses_a_short_secret_and_a_schema_it_cannot_check(admin_client, project):
    data = {"name": "h", "url": HOOK_URL, "secret": "short", "param_schema": '{"oneOf": []}', "timeout_seconds": "5"}
    page = admin_client.post("/admin/healing/remediationhook/add/", data).content.decode()
    assert "At least 16 characters" in page and "Not a schema Kaizen can check" in page
    assert not RemediationHook.objects.exists()


def test_console_shows_runs_read_only_and_undoes_one(admin_client, context, flag):
    done = run("flag_enable_for_user", {"flag": "generate-retry"}, context)
    assert admin_client.get("/admin/healing/remediationrun/").status_code == 200
    page = admin_client.get(f"/admin/healing/remediationrun/{done.pk}/change/").content.decode()
    assert "generate-retry" in page and 'name="_save"' not in page
    admin_client.post("/admin/healing/remediationrun/", {"action": "undo", "_selected_action": [done.pk]})
    assert override_of(flag) is None
    assert RemediationRun.objects.get(undo_of=done).actor == "admin"
