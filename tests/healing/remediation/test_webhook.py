"""Owner webhooks as remediation steps, the JSON Schema of their params, and their console page."""

import hashlib
import hmac
import json

import pytest
import requests
import responses

from healing.models import AuditEntry, RemediationHook, RemediationOutcome, RemediationRun
from healing.remediation import (
    RemediationContext,
    RemediationPlanError,
    remediation_plan_validate,
    remediation_undo,
)
from healing.remediation.json_schema import SchemaError, schema_parse, schema_problems
from tests.factories import IssueFactory, ProjectFactory
from tests.healing.remediation.support import HOOK_SECRET, HOOK_URL, override_of, run

pytestmark = pytest.mark.django_db


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
