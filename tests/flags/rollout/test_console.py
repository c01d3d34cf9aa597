"""Rollouts and the promotion policy in the console."""

from datetime import timedelta

import pytest
from django.utils import timezone

from flags.models import Flag, PromotionPolicy
from flags.rollout.engine import rollout_advance
from healing.models import AuditEntry
from tests.flags.rollout.support import CANARY, PARTIAL

pytestmark = pytest.mark.django_db


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
