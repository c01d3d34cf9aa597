"""Quick Fix: similar issues, affected users, the AI recommendation (Anthropic faked at its HTTP
transport; off without a key), the risk, and the Change it opens — now or scheduled."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flags.models import PromotionPolicy
from healing.changes.lifecycle import change_create
from healing.loop import quick_fix
from healing.models import AuditEntry, Change, ChangeStatus, IssueUser, RiskLevel
from kaizen_site import llm
from kaizen_site.models import LLMCall
from tests.anthropic_fake import FakeAPI, error, ok
from tests.factories import IssueFactory, OccurrenceFactory
from tests.owner import owner_staff, owner_verify

pytestmark = pytest.mark.django_db

URL = "/admin/healing/quick-fix/"
PLAN = [{"action": "cache_clear", "params": {"keys": ["cart:9"]}}]


def recommendation(**overrides) -> dict:
    value = {
        "title": "Guard the empty cart at checkout",
        "summary": "Checkout divides by the item count; an empty cart makes it fail.",
        "severity": "P1",
        "plan": PLAN,
        "success_criteria": "No checkout errors for empty carts for a day.",
        "rollback_plan": "Revert the patch.",
    }
    value.update(overrides)
    return value


def message(tool_input: dict) -> dict:
    return {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-5",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "submit_recommendation", "input": tool_input}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 200},
    }  # fmt: skip


@pytest.fixture
def fake_llm(settings, monkeypatch):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.KAIZEN_LLM_MODEL = "claude-sonnet-5"
    settings.KAIZEN_LLM_MAX_RETRIES = 0
    settings.KAIZEN_REMEDIATION_CACHE_PREFIXES = ["cart:"]

    def install(*answers) -> FakeAPI:
        api = FakeAPI(*answers)
        monkeypatch.setattr(llm, "_shared_client", lambda key, timeout, retries: llm._build(
            key=key, timeout=timeout, retries=retries, http_client=api.client))  # fmt: skip
        return api

    return install


@pytest.fixture
def checkout_issues():
    """Two checkout problems (one recent, one older) and an unrelated one."""
    now = timezone.now()
    crash = IssueFactory(title="Checkout crashes with an empty cart", culprit="/checkout", severity="P1")
    slow = IssueFactory(title="Checkout page is slow for empty carts", culprit="/checkout", type="SLOW_RESPONSE")
    other = IssueFactory(title="Avatar upload rejects PNG files", culprit="/profile")
    for i in range(3):
        OccurrenceFactory(issue=crash, received_at=now - timedelta(days=1), user_id=f"u{i}")
    OccurrenceFactory(issue=crash, received_at=now - timedelta(days=20), user_id="u-old")
    OccurrenceFactory(issue=slow, received_at=now - timedelta(hours=2), user_id="u0")
    OccurrenceFactory(issue=other, received_at=now, user_id="u9")
    for issue, users in ((crash, ["u0", "u1", "u2", "u-old"]), (slow, ["u0"]), (other, ["u9"])):
        IssueUser.objects.bulk_create([IssueUser(issue=issue, user_key=u) for u in users])
    return {"crash": crash, "slow": slow, "other": other}


def test_similar_issues_are_ranked_by_text_and_counted_this_week(checkout_issues):
    similar = quick_fix.similar_issues(text="checkout crashes when the cart is empty")

    titles = [s.issue.title for s in similar]
    assert titles[0] == "Checkout crashes with an empty cart"
    assert "Avatar upload rejects PNG files" not in titles
    assert {s.issue.title: s.this_week for s in similar}["Checkout crashes with an empty cart"] == 3  # not the old one
    assert quick_fix.affected_users(similar) == 4  # u0 counted once across both issues


def test_without_a_key_the_recommendation_is_off_and_history_is_suggested(admin_client, settings, checkout_issues):
    settings.ANTHROPIC_API_KEY = ""
    fixed = change_create(title="Clear the cart cache", severity="P1", actor="kaizen", issue=checkout_issues["crash"],
                          plan=PLAN)  # fmt: skip
    Change.objects.filter(pk=fixed.pk).update(status=ChangeStatus.COMPLETE)

    response = admin_client.post(URL, {"assess": "1", "text": "Checkout crashes when the cart is empty"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Off: LLM diagnosis off: ANTHROPIC_API_KEY not set" in page
    assert f"what fixed a similar issue ({fixed.key})" in page
    assert json.loads(response.context["form"].initial["plan"]) == PLAN
    assert not LLMCall.objects.exists()


def test_the_ai_recommendation_comes_from_claude_with_the_similar_issues(admin_client, fake_llm, checkout_issues):
    api = fake_llm(ok(message(recommendation())))

    response = admin_client.post(URL, {"assess": "1", "text": "Checkout crashes when the cart is empty"})

    page = response.content.decode()
    assert "Guard the empty cart at checkout" in page and "an empty cart makes it fail" in page
    sent = api.body(0)
    assert sent["tool_choice"] == {"type": "tool", "name": "submit_recommendation"}
    assert "Checkout crashes with an empty cart" in sent["messages"][0]["content"]
    assert "Checkout crashes when the cart is empty" in sent["messages"][0]["content"]
    call = LLMCall.objects.get()
    assert call.purpose == "quick_fix" and call.valid
    assert response.context["assessment"].risk.level == RiskLevel.LOW  # cache_clear is a low-risk action
    form = response.context["form"]
    assert form.initial["severity"] == "P1" and json.loads(form.initial["plan"]) == PLAN


def test_an_invalid_or_failed_answer_leaves_the_page_working(admin_client, fake_llm, checkout_issues):
    fake_llm(ok(message(recommendation(plan=[{"action": "rm_rf", "params": {}}]))))
    page = admin_client.post(URL, {"assess": "1", "text": "checkout broken"}).content.decode()
    assert "The AI&#x27;s answer was unusable" in page and "rm_rf" in page
    assert LLMCall.objects.get().valid is False

    fake_llm(error(400, "invalid_request_error"))
    page = admin_client.post(URL, {"assess": "1", "text": "checkout broken"}).content.decode()
    assert "The AI recommendation failed" in page


def test_risk_follows_the_plan_and_the_patch_and_the_owners_policy(settings):
    settings.KAIZEN_REMEDIATION_CACHE_PREFIXES = ["cart:"]
    PromotionPolicy.objects.create(max_auto_risk=RiskLevel.LOW, max_auto_exposure=100)
    low = quick_fix.risk_estimate(plan=PLAN)
    assert low.level == RiskLevel.LOW and low.decision.allowed
    patched = quick_fix.risk_estimate(plan=PLAN, patch_risk="high")
    assert patched.level == RiskLevel.HIGH and not patched.decision.allowed
    assert quick_fix.risk_estimate(plan=[{"action": "no_such_action"}]).level == RiskLevel.HIGH


def change_post(**fields) -> dict:
    data = {"create": "1", "request_text": "Checkout crashes", "title": "Guard the empty cart", "severity": "P1",
            "plan": json.dumps(PLAN), "summary": "", "patch_diff": "", "success_criteria": "", "rollback_plan": ""}  # fmt: skip
    data.update(fields)
    return data


def test_apply_suggested_opens_and_starts_the_change(admin_client, checkout_issues):
    response = admin_client.post(URL, change_post(mode="apply", issue=str(checkout_issues["crash"].pk)))

    change = Change.objects.get()
    assert response.status_code == 302 and response.url == f"/admin/healing/change/{change.pk}/change/"
    assert (change.status, change.issue, change.plan, change.created_by) == (
        ChangeStatus.IN_PROGRESS, checkout_issues["crash"], PLAN, "admin")  # fmt: skip
    assert change.scorecard["diagnosis"] == {"source": "quick_fix", "request": "Checkout crashes"}
    assert AuditEntry.objects.filter(action="change.create", actor="admin").exists()


def test_a_customized_plan_is_validated_before_anything_is_written(admin_client):
    response = admin_client.post(URL, change_post(mode="apply", plan='{"not": "a list"}'))
    assert response.status_code == 400 and not Change.objects.exists()

    response = admin_client.post(URL, change_post(mode="apply", plan='[{"action": ""}]'))
    assert response.status_code == 400 and "Not a list of remediation actions" in response.content.decode()
    assert not Change.objects.exists() and not AuditEntry.objects.exists()

    response = admin_client.post(URL, change_post(mode="apply", plan="[]", title="Say hello on the dashboard"))
    assert response.status_code == 302 and Change.objects.get().plan == []


def test_schedule_for_later_leaves_a_draft_that_the_sweep_starts_when_due(admin_client):
    when = timezone.localtime() + timedelta(hours=2)
    response = admin_client.post(URL, change_post(mode="schedule", start_at=when.strftime("%Y-%m-%dT%H:%M")))

    assert response.status_code == 302
    change = Change.objects.get()
    assert change.status == ChangeStatus.DRAFT and change.scheduled_for is not None
    assert quick_fix.changes_scheduled_start() == []  # not due yet
    assert quick_fix.changes_scheduled_start(now=timezone.now() + timedelta(hours=3)) == [change.key]
    change.refresh_from_db()
    assert change.status == ChangeStatus.IN_PROGRESS
    assert change.promotions.last().actor == "kaizen"
    assert quick_fix.changes_scheduled_start(now=timezone.now() + timedelta(hours=3)) == []  # once


def test_schedule_needs_a_time_to_come(admin_client):
    assert admin_client.post(URL, change_post(mode="schedule")).status_code == 400
    past = (timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client.post(URL, change_post(mode="schedule", start_at=past))
    assert response.status_code == 400 and "time still to come" in response.content.decode()
    assert not Change.objects.exists()


def test_an_empty_question_is_a_400(admin_client):
    assert admin_client.get(URL).status_code == 200
    assert admin_client.post(URL, {"assess": "1", "text": ""}).status_code == 400


def test_assessing_reads_a_bounded_number_of_rows(settings, checkout_issues):
    settings.ANTHROPIC_API_KEY = ""

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            quick_fix.quick_fix_assess(text="checkout fails with an empty cart")
        return len(captured)

    baseline = queries()
    for i in range(20):
        issue = IssueFactory(title=f"Checkout fails with an empty cart, variant {i}", culprit="/checkout")
        OccurrenceFactory(issue=issue)
    assert queries() == baseline


def test_the_page_needs_the_permissions(client, settings):
    viewer = owner_staff(client, settings)
    assert client.get(URL).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="view_issue"))
    owner_verify(client, User.objects.get(pk=viewer.pk))
    assert client.get(URL).status_code == 200
    assert client.post(URL, change_post(mode="apply")).status_code == 403  # no add_change
    assert not Change.objects.exists()
    client.logout()
    assert client.get(URL).status_code == 302  # to the login page
