"""Proposal analysis through the real anthropic SDK, faked at its HTTP transport (httpx2):
a valid answer, an invalid one and a timeout; each leaves its LLMCall row."""

import json

import httpx2
import pytest

from kaizen_site.models import LLMCall
from research.analysis import PURPOSE, TOOL_NAME, llm_assess
from research.scoring import Candidate

pytestmark = pytest.mark.django_db

CANDIDATE = Candidate(origin="competitor", title="Add deploy previews", text="Cursor announced previews", strength=0.6,
                      context={"competitor": "Cursor"})  # fmt: skip
PHASES = {k: f"{k} notes" for k in ("decompose", "prior_knowledge", "explore", "critique", "synthesize", "verify")}


def answer(**overrides) -> dict:
    value = {
        "phases": PHASES, "what": "Deploy previews per change", "why": "Competitors ship it; owners ask for it.",
        "how": "1. Build per flag 2. Link from the Change", "files": ["healing/changes.py"], "risk": "Low: behind a flag",
        "time": "3 days", "scores": {"impact": 8, "effort": 4, "risk": 2, "edge": 5, "revenue": 6},
        "category": "QUICK_FIX",
    }  # fmt: skip
    value.update(overrides)
    return value


def message(tool_input: dict) -> dict:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": tool_input}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 300},
    }  # fmt: skip


@pytest.fixture
def llm(settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.KAIZEN_LLM_MODEL = "claude-sonnet-5"
    settings.KAIZEN_LLM_TIMEOUT = 5.0
    settings.KAIZEN_LLM_MAX_RETRIES = 0
    return settings


def client(handler) -> httpx2.Client:
    return httpx2.Client(transport=httpx2.MockTransport(handler))


def test_valid_answer_is_used_with_its_phases(llm):
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=message(answer()))

    result = llm_assess(candidate=CANDIDATE, prior=[{"title": "Preview links", "status": "dismissed"}],
                        http_client=client(handler))  # fmt: skip
    assert result.scored_by == "llm" and result.category == "QUICK_FIX"
    assert (result.impact, result.effort, result.risk, result.edge, result.revenue) == (8, 4, 2, 5, 6)
    assert result.score == 8 * 2 + 5 - 4 - 3 + 6
    assert result.analysis["critique"] == "critique notes"
    body = seen[0]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert body["tools"][0]["input_schema"]["additionalProperties"] is False
    assert "Preview links → dismissed" in body["messages"][0]["content"]
    call = LLMCall.objects.get(purpose=PURPOSE)
    assert call.valid and call.tokens_in == 900 and result.analysis["llm_call"] == call.pk


def test_invalid_answer_falls_back_to_the_heuristic(llm):
    bad = answer(scores={"impact": 11, "effort": 4, "risk": 2, "edge": 5, "revenue": 6}, category="MAYBE")
    result = llm_assess(
        candidate=CANDIDATE, prior=[], http_client=client(lambda r: httpx2.Response(200, json=message(bad)))
    )
    assert result.scored_by == "heuristic"
    assert (
        result.analysis["llm_fallback"].startswith("invalid answer:")
        and "scores.impact" in result.analysis["llm_fallback"]
    )
    call = LLMCall.objects.get(purpose=PURPOSE)
    assert not call.valid and "category" in call.error


def test_timeout_falls_back_and_is_transient(llm):
    def handler(request):
        raise httpx2.ReadTimeout("slow", request=request)

    result = llm_assess(candidate=CANDIDATE, prior=[], http_client=client(handler))
    assert result.scored_by == "heuristic" and result.analysis["llm_fallback"].startswith("transient: timed out")
    assert LLMCall.objects.get(purpose=PURPOSE).error.startswith("transient")
