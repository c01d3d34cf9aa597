"""LLM diagnosis through the real anthropic SDK, faked only at its HTTP transport (httpx2): the
schema, the re-ask, the fallbacks, the error mapping, and the LLMCall rows every attempt leaves."""

import time
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest
from django.core.checks import Info
from django.utils import timezone

from healing.loop import llm_diagnosis as diagnosis
from healing.loop.llm_diagnosis import ESCALATE, NEEDS_INPUT, OFF, Diagnosis, issue_diagnose
from kaizen_site import checks
from kaizen_site.llm import LLM_OFF, LLMError, cost_estimate, model_info
from kaizen_site.models import LLMCall
from tests.anthropic_fake import FakeAPI, error, ok, raising
from tests.factories import IssueFactory, OccurrenceFactory

pytestmark = pytest.mark.django_db

PHASES = ("DECOMPOSE", "PRIOR KNOWLEDGE", "EXPLORE", "CRITIQUE", "SYNTHESIZE", "VERIFY")
DIFF = "--- a/cart.py\n+++ b/cart.py\n@@ -1 +1 @@\n-total = None\n+total = 0\n"


def answer(**overrides) -> dict:
    """A valid submit_diagnosis input; overrides replace fields (None removes one)."""
    value = {
        "root_cause": "The cart total is None for an empty cart and checkout divides by it.",
        "confidence": 0.82,
        "hypotheses": [
            {"hypothesis": "Empty-cart total is None", "evidence": "TypeError in cart.total", "verdict": "supported"},
            {"hypothesis": "Payment provider outage", "evidence": "No failed provider calls", "verdict": "refuted"},
        ],
        "remediation_plan": [{"action": "cache_clear", "params": {"keys": ["cart:9"]}}],
        "code_patch": {"diff": DIFF, "files": ["cart.py"], "risk": "low"},
        "user_message": "Checkout failed because of a bug on our side. We are fixing it now.",
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not None}


def message(tool_input=None, *, text=None, stop_reason="tool_use", model="claude-sonnet-5") -> dict:
    """A Messages API response body (anthropic.types.Message)."""
    content = [{"type": "text", "text": text}] if text else []
    if tool_input is not None:
        content.append({"type": "tool_use", "id": "toolu_01", "name": "submit_diagnosis", "input": tool_input})
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 1200, "output_tokens": 400},
    }


@pytest.fixture
def llm(settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.KAIZEN_LLM_MODEL = "claude-sonnet-5"
    settings.KAIZEN_LLM_TIMEOUT = 60.0
    settings.KAIZEN_LLM_MAX_RETRIES = 1
    return settings


@pytest.fixture
def issue():
    issue = IssueFactory(title="TypeError: cannot divide by None", culprit="/checkout", affected_users=37)
    earlier = timezone.now() - timedelta(hours=1)
    OccurrenceFactory(
        issue=issue, received_at=earlier, payload={"message": "older", "description": "Same as yesterday."}
    )
    OccurrenceFactory(
        issue=issue,
        payload={
            "message": "TypeError: cannot divide by None",
            "type": "ERROR",
            "route": "/checkout",
            "url": "https://shop.example.com/checkout",
            "user": {"id": "u-42", "email": "alice@example.com"},
            "exception": {
                "type": "TypeError",
                "value": "unsupported operand type(s) for /: 'int' and 'NoneType'",
                "stacktrace": [
                    {"function": "checkout", "filename": "views.py", "lineno": 10, "in_app": True},
                    {"function": "average", "filename": "cart.py", "lineno": 77, "in_app": True},
                ],
            },
            "console": [{"level": "error", "message": "checkout failed: 500"}],
            "network": [{"method": "POST", "url": "/api/checkout", "status": 500, "duration_ms": 120.0}],
            "timeline": [{"action": "click", "target": "button#pay"}],
            "request": {
                "method": "POST",
                "path": "/api/checkout",
                "headers": {"Authorization": "Bearer live-secret", "Accept": "application/json"},
                "body": {"cart_id": 9, "password": "hunter2"},
                "status": 500,
            },
            "state": {"cart": {"items": []}, "session_token": "tok-123"},
            "description": "I pressed Pay and nothing happened.",
        },
    )
    return issue


def diagnose(issue, api: FakeAPI, **kwargs):
    return issue_diagnose(issue=issue, http_client=api.client, plan_validate=accept_known, **kwargs)


def accept_known(plan):
    """Stands in for the remediation registry: knows cache_clear only."""
    for step in plan:
        if step["action"] != "cache_clear":
            raise ValueError(f"unknown action {step['action']!r}")


# --- Answers ---------------------------------------------------------------------------------


def test_a_valid_answer_is_a_diagnosis_and_one_valid_call(llm, issue):
    api = FakeAPI(ok(message(answer())))

    result = diagnose(issue, api)

    assert result.ok and result.fallback == ""
    assert isinstance(result.diagnosis, Diagnosis)
    assert result.diagnosis.confidence == 0.82 and result.diagnosis.code_patch.risk == "low"
    assert result.diagnosis.remediation_plan[0].action == "cache_clear"
    call = LLMCall.objects.get()
    assert result.calls == (call.id,)
    assert (call.purpose, call.model, call.attempt, call.issue_id) == ("diagnosis", "claude-sonnet-5", 1, issue.id)
    assert call.valid and call.error == "" and call.request_id == "req_01"
    assert (call.tokens_in, call.tokens_out) == (1200, 400)
    assert call.cost_usd == Decimal("0.006400")  # 1200 × $2/MTok + 400 × $10/MTok
    assert len(call.prompt_fingerprint) == 64


def test_the_request_carries_the_tool_the_forced_choice_the_model_and_the_six_phases(llm, issue):
    api = FakeAPI(ok(message(answer())))

    diagnose(issue, api, candidates=[{"pattern": "none-total-division", "score": 0.71}])

    (request,) = api.requests
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["authorization"] == "Bearer sk-ant-test"  # this SDK sends the key as a bearer token
    body = api.body(0)
    assert body["model"] == "claude-sonnet-5"
    assert body["tools"] == [
        {
            "name": "submit_diagnosis",
            "description": diagnosis.TOOL["description"],
            "input_schema": Diagnosis.model_json_schema(),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "submit_diagnosis"}
    positions = [body["system"].index(phase) for phase in PHASES]
    assert positions == sorted(positions)
    prompt = body["messages"][0]["content"]
    for evidence in (
        "cart.py:77",
        "checkout failed: 500",
        "button#pay",
        "/api/checkout",
        "I pressed Pay and nothing happened.",
        "Same as yesterday.",  # what other affected users said
        '"affected_users": 37',
        "none-total-division",
        "cache_clear",  # from the registry's catalogue
    ):
        assert evidence in prompt
    # The innermost frame comes last, under the exception's type and value.
    assert prompt.index("TypeError: unsupported") < prompt.index("views.py:10") < prompt.index("cart.py:77")
    # Secrets and the user's identity stay home.
    for secret in ("live-secret", "hunter2", "tok-123", "alice@example.com"):
        assert secret not in prompt


def test_models_that_refuse_forced_tool_use_get_auto_and_a_textual_answer_is_re_asked(llm, issue):
    llm.KAIZEN_LLM_MODEL = "claude-sonnet-5-5"
    api = FakeAPI(ok(message(text="The root cause is probably the cart.")), ok(message(answer())))

    result = diagnose(issue, api)

    assert result.ok
    assert api.body(0)["tool_choice"] == {"type": "auto"}
    assert api.body(1)["messages"][-1] == {
        "role": "user",
        "content": diagnosis.REASK.format(problem="no submit_diagnosis call in the answer"),
    }
    assert [c.valid for c in LLMCall.objects.order_by("attempt")] == [False, True]


def test_an_invalid_answer_is_re_asked_once_quoting_the_validation_error(llm, issue):
    api = FakeAPI(ok(message(answer(confidence=1.7))), ok(message(answer())))

    result = diagnose(issue, api)

    assert result.ok and len(api.requests) == 2
    first, retry = api.body(0)["messages"], api.body(1)["messages"]
    assert retry[0] == first[0]
    assert retry[1]["role"] == "assistant" and retry[1]["content"][0]["type"] == "tool_use"
    (tool_result,) = retry[2]["content"]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_01" and tool_result["is_error"]
    assert "confidence: Input should be less than or equal to 1" in tool_result["content"]
    calls = list(LLMCall.objects.order_by("attempt"))
    assert [(c.attempt, c.valid) for c in calls] == [(1, False), (2, True)]
    assert "confidence" in calls[0].error
    assert calls[0].prompt_fingerprint == calls[1].prompt_fingerprint  # same prompt, new data
    assert result.calls == tuple(c.id for c in calls)


def test_garbage_twice_escalates_with_two_invalid_calls(llm, issue):
    api = FakeAPI(ok(message({"root_cause": 42, "mood": "confident"})))

    result = diagnose(issue, api)

    assert not result.ok and result.fallback == ESCALATE
    assert "invalid twice" in result.reason and "root_cause" in result.reason
    assert len(api.requests) == 2
    calls = list(LLMCall.objects.order_by("attempt"))
    assert [(c.attempt, c.valid) for c in calls] == [(1, False), (2, False)]
    assert all("root_cause: Input should be a valid string" in c.error for c in calls)
    assert all(c.tokens_in == 1200 and c.cost_usd for c in calls)


def test_an_invalid_answer_that_asks_a_question_falls_back_to_asking_the_user(llm, issue):
    question = "Which payment method did you choose?"
    api = FakeAPI(ok(message(answer(hypotheses=[], needs_input=question))))

    result = diagnose(issue, api)

    assert result.fallback == NEEDS_INPUT and result.question == question
    assert "hypotheses: List should have at least 2 items" in result.reason


def test_a_plan_with_an_unknown_action_is_invalid_output(llm, issue):
    plan = [{"action": "drop_database", "params": {}}]
    api = FakeAPI(ok(message(answer(remediation_plan=plan))))

    result = issue_diagnose(issue=issue, http_client=api.client)  # the default registry

    assert result.fallback == ESCALATE and "drop_database" in result.reason
    calls = list(LLMCall.objects.all())
    assert len(calls) == 2 and not any(c.valid for c in calls)
    assert all("remediation_plan" in c.error and "drop_database" in c.error for c in calls)


def test_the_model_is_offered_every_registered_action_with_its_params_schema():
    from healing.remediation import ACTIONS

    offered = diagnosis.default_actions()

    assert set(offered) == set(ACTIONS)
    assert all("Risk: " in text and "Params (JSON Schema): {" in text for text in offered.values())


def test_a_malformed_patch_is_invalid_output(llm, issue):
    patch = {"diff": "make the total zero", "files": ["cart.py"], "risk": "low"}
    api = FakeAPI(ok(message(answer(code_patch=patch))))

    result = diagnose(issue, api)

    assert result.fallback == ESCALATE and "not a unified diff" in result.reason


# --- Failures --------------------------------------------------------------------------------


def test_a_timeout_is_transient_and_recorded(llm, issue):
    api = FakeAPI(raising(httpx2.ReadTimeout))

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert caught.value.transient
    assert len(api.requests) == 2  # max_retries=1: the SDK tried once more
    call = LLMCall.objects.get()
    assert caught.value.call == call
    assert not call.valid and call.error == "transient: timed out after 60 s" and call.tokens_in == 0


def test_a_lost_connection_is_transient(llm, issue):
    llm.KAIZEN_LLM_MAX_RETRIES = 0
    api = FakeAPI(raising(httpx2.ConnectError))

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert caught.value.transient and len(api.requests) == 1
    assert LLMCall.objects.get().error.startswith("transient: connection failed")


def test_a_rate_limit_is_transient_after_one_sdk_retry_honouring_retry_after(llm, issue):
    api = FakeAPI(error(429, "rate_limit_error", headers={"retry-after": "0.05"}))

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert caught.value.transient and caught.value.retry_after == 0.05
    assert len(api.requests) == 2
    assert LLMCall.objects.get().error == "transient: 429 rate_limit_error: rate_limit_error happened"


def test_an_overloaded_api_is_transient_after_one_sdk_retry(llm, issue):
    api = FakeAPI(error(529, "overloaded_error"))

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert caught.value.transient and len(api.requests) == 2
    assert "529 overloaded_error" in LLMCall.objects.get().error


def test_a_long_retry_after_is_left_to_the_task_instead_of_slept_on(llm, issue):
    api = FakeAPI(error(429, "rate_limit_error", headers={"retry-after": "120"}))
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert time.monotonic() - started < 5
    assert caught.value.transient and caught.value.retry_after == 120
    assert len(api.requests) == 1
    assert LLMCall.objects.get().error == "transient: 429: the API asked to wait 120 s"


def test_a_rate_limit_the_sdk_retry_gets_past_is_one_valid_call(llm, issue):
    api = FakeAPI(error(429, "rate_limit_error", headers={"retry-after-ms": "10"}), ok(message(answer())))

    result = diagnose(issue, api)

    assert result.ok and len(api.requests) == 2
    assert LLMCall.objects.get().valid


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error")],
)
def test_permanent_errors_escalate_without_retrying(llm, issue, status, kind):
    api = FakeAPI(error(status, kind))

    result = diagnose(issue, api)

    assert result.fallback == ESCALATE
    assert result.reason == f"LLM diagnosis failed: {status} {kind}: {kind} happened"
    assert len(api.requests) == 1
    call = LLMCall.objects.get()
    assert result.calls == (call.id,)
    assert not call.valid and call.error == f"permanent: {status} {kind}: {kind} happened"


def test_a_server_error_is_transient(llm, issue):
    llm.KAIZEN_LLM_MAX_RETRIES = 0
    api = FakeAPI(error(500, "api_error"))

    with pytest.raises(LLMError) as caught:
        diagnose(issue, api)

    assert caught.value.transient and len(api.requests) == 1


def test_without_an_api_key_diagnosis_is_off_and_nothing_is_sent(llm, issue):
    llm.ANTHROPIC_API_KEY = ""
    api = FakeAPI(ok(message(answer())))

    result = diagnose(issue, api)

    assert result.fallback == OFF and result.reason == LLM_OFF == "LLM diagnosis off: ANTHROPIC_API_KEY not set"
    assert api.requests == [] and not LLMCall.objects.exists()


def test_the_system_check_says_when_llm_diagnosis_is_off(settings):
    settings.ANTHROPIC_API_KEY = ""
    off = [p for p in checks.owner_settings(None) if p.id == "kaizen.I002"]
    assert len(off) == 1 and isinstance(off[0], Info) and off[0].msg == LLM_OFF

    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    assert not [p for p in checks.owner_settings(None) if p.id == "kaizen.I002"]


# --- The prompt's budget and the price table ---------------------------------------------------


def test_each_part_of_the_evidence_is_cut_to_its_budget_keeping_the_latest(llm):
    issue = IssueFactory()
    console = [{"level": "log", "message": f"line {n:03d} " + "x" * 200} for n in range(200)]
    OccurrenceFactory(issue=issue, payload={"message": "m" * 10_000, "console": console})

    prompt = diagnosis.prompt_render(issue=issue, actions={})

    logs = prompt.split("## Logs: browser console (most recent last)\n")[1].split("\n\n## ")[0]
    assert len(logs) <= diagnosis.BUDGETS["logs"] + 40
    assert "earlier entries cut]" in logs and "line 199" in logs and "line 000" not in logs
    assert "m" * diagnosis.BUDGETS["message"] + " …[8000 characters cut]" in prompt


def test_prices_follow_the_model_family_and_unknown_models_have_no_cost():
    class Usage:
        input_tokens, output_tokens = 1_000_000, 100_000
        cache_creation_input_tokens = cache_read_input_tokens = None

    assert model_info("claude-sonnet-5-5-20260928") is model_info("claude-sonnet-5-5")
    assert model_info("claude-sonnet-5-20260630") is model_info("claude-sonnet-5")
    assert not model_info("claude-sonnet-5-5").forced_tool_choice and model_info("claude-sonnet-5").forced_tool_choice
    assert cost_estimate(model="claude-opus-5-5", usage=Usage) == Decimal("6.000000")  # $4 + 0.1 × $20
    assert cost_estimate(model="some-future-model", usage=Usage) is None
