"""The registered actions: flags, Celery task retry, cache clearing."""

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from flags.models import Flag, Override
from flags.services import flag_kill, override_set
from healing.models import AuditEntry
from healing.remediation import (
    RemediationContext,
    RemediationPlanError,
    remediation_plan_validate,
    remediation_undo,
)
from tests.healing.remediation.support import override_of, run

pytestmark = pytest.mark.django_db


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
