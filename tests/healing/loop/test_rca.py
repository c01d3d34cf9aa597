"""Root-cause write-ups: the template and LLM drafts, the fallback, approval and the console."""

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from healing.loop import rca as rca_module
from healing.loop.rca import SECTIONS, edit_distance, rca_approve, rca_draft, rca_draft_for_incident, rca_opened
from healing.models import AuditEntry, Change, RcaSource, RcaStatus, RootCauseAnalysis
from kaizen_site.models import LLMCall
from tests.anthropic_fake import FakeAPI, error, ok
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory

pytestmark = pytest.mark.django_db


def _iso(at) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def issue():
    detected = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    issue = IssueFactory(
        title="TypeError: cannot divide by None", severity="P0", culprit="/checkout", first_seen=detected
    )
    OccurrenceFactory(
        issue=issue,
        received_at=detected,
        message="TypeError: cannot divide by None",
        payload={
            "message": "TypeError: cannot divide by None",
            "console": [
                {"at": _iso(detected - timedelta(seconds=300)), "level": "info", "message": "old boot log"},
                {"at": _iso(detected - timedelta(seconds=30)), "level": "error", "message": "cart total is null"},
            ],
            "network": [
                {"at": _iso(detected - timedelta(seconds=90)), "method": "GET", "url": "/api/stale", "status": 200},
                {"at": _iso(detected - timedelta(seconds=5)), "method": "POST", "url": "/api/checkout", "status": 500},
            ],
        },
    )
    IssueEventFactory(issue=issue, stage="detected", message="We noticed checkout failing.", created_at=detected)
    IssueEventFactory(
        issue=issue,
        stage="root_cause_found",
        message="We found the cause.",
        detail="Empty carts have a None total.",
        created_at=detected + timedelta(minutes=1),
    )
    AuditEntry.objects.create(
        actor="kaizen", action="owner.alert", target=f"issue:{issue.pk}", detail={"stage": "escalated", "why": "P0"}
    )
    return issue


@pytest.fixture
def change(issue):
    return Change.objects.create(
        number=7,
        title="Guard empty cart totals",
        severity="P0",
        issue=issue,
        plan=[{"action": "cache_clear", "params": {"keys": ["cart:9"]}}],
        scorecard={"verification": {"passed": True, "summary": "3/3 probes passed"}},
        created_by="kaizen",
    )


@pytest.fixture
def llm(settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.KAIZEN_LLM_MODEL = "claude-sonnet-5"
    settings.KAIZEN_LLM_TIMEOUT = 60.0
    settings.KAIZEN_LLM_MAX_RETRIES = 0  # a 500 fails at once instead of sleeping through a retry
    return settings


@pytest.fixture
def no_llm(settings):
    settings.ANTHROPIC_API_KEY = ""
    return settings


def tool_answer(sections: dict) -> dict:
    return {
        "id": "msg_rca",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "submit_rca", "input": sections}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 900, "output_tokens": 300},
    }


SECTIONS_ANSWER = {
    "timeline": "- 12:00 checkout started failing",
    "impact": "- every checkout with an empty cart",
    "root_cause": "Empty carts have a None total.",
    "fix": "KAIZ-007 guards the total.",
    "prevention": "A regression test for empty carts.",
}


def section(markdown: str, name: str) -> str:
    after = markdown.split(f"## {name}\n", 1)[1]
    return after.split("\n## ", 1)[0]


def test_template_draft_has_the_five_sections_timeline_alerts_fix_and_the_last_minute_of_logs(no_llm, issue, change):
    rca = rca_draft(issue=issue, change=change)

    assert rca.source == RcaSource.TEMPLATE and rca.status == RcaStatus.DRAFT
    assert [line[3:] for line in rca.draft.splitlines() if line.startswith("## ")] == list(SECTIONS)
    timeline = section(rca.draft, "Timeline")
    assert "We noticed checkout failing." in timeline and "Empty carts have a None total." in timeline
    assert "owner alerted: stage: escalated; why: P0" in timeline
    assert "cart total is null" in timeline and "POST /api/checkout → 500" in timeline
    assert "old boot log" not in rca.draft and "/api/stale" not in rca.draft  # older than 60 s
    assert "TypeError: cannot divide by None" in timeline  # what the report said
    assert timeline.index("cart total is null") < timeline.index("/api/checkout")
    assert "Empty carts have a None total." in section(rca.draft, "Root cause")
    fix = section(rca.draft, "Fix")
    assert "KAIZ-007" in fix and "cache_clear" in fix and "passed: 3/3 probes passed" in fix
    entry = AuditEntry.objects.get(action="rca.draft")
    assert entry.target == f"rca:{rca.pk}" and entry.detail["source"] == "template"
    assert not LLMCall.objects.exists()


def test_drafting_twice_returns_the_same_row(no_llm, issue, change):
    first = rca_draft(issue=issue, change=change)
    second = rca_draft(issue=issue, change=change)
    without_change = rca_draft(issue=issue)

    assert second.pk == first.pk and without_change.pk != first.pk
    assert rca_draft(issue=issue).pk == without_change.pk
    assert RootCauseAnalysis.objects.count() == 2


def test_only_p0_and_p1_incidents_get_a_write_up(no_llm):
    assert rca_draft_for_incident(issue=IssueFactory(severity="P2")) is None
    assert rca_draft_for_incident(issue=IssueFactory(severity="P1")) is not None


def test_a_write_up_whose_task_cannot_be_sent_is_drafted_in_place(
    no_llm, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(rca_module, "task_publish", broker_down)
    issue = IssueFactory(severity="P0")
    with django_capture_on_commit_callbacks(execute=True):
        rca_module.rca_draft_later(issue=issue)
        rca_module.rca_draft_later(issue=IssueFactory(severity="P2"))  # none for a minor issue
        assert not RootCauseAnalysis.objects.exists()  # only once the caller's work commits
    assert list(RootCauseAnalysis.objects.values_list("issue_id", flat=True)) == [issue.pk]
    assert "write-up drafted in place" in caplog.text


def test_the_task_of_a_deleted_issue_does_nothing(no_llm):
    assert rca_module.rca_draft_task(issue_id="00000000-0000-0000-0000-000000000000", change_id=None) is False
    assert not RootCauseAnalysis.objects.exists()


def test_llm_draft_goes_through_the_real_client_and_is_logged(llm, issue, change):
    api = FakeAPI(ok(tool_answer(SECTIONS_ANSWER)))

    rca = rca_draft(issue=issue, change=change, http_client=api.client)

    assert rca.source == RcaSource.LLM
    assert section(rca.draft, "Root cause").strip() == "Empty carts have a None total."
    assert [line[3:] for line in rca.draft.splitlines() if line.startswith("## ")] == list(SECTIONS)
    call = LLMCall.objects.get()
    assert call.purpose == "rca" and call.valid and call.issue_id == issue.pk
    sent = json.loads(api.requests[0].content)
    assert sent["tool_choice"] == {"type": "tool", "name": "submit_rca"}
    assert set(sent["tools"][0]["input_schema"]["properties"]) == {
        "timeline", "impact", "root_cause", "fix", "prevention"
    }  # fmt: skip
    assert "cart total is null" in sent["messages"][0]["content"]  # the facts reach the model
    assert AuditEntry.objects.get(action="rca.draft").detail["llm_call"] == call.pk


def test_llm_failure_falls_back_to_the_template(llm, issue):
    api = FakeAPI(error(500, "api_error"))

    rca = rca_draft(issue=issue, http_client=api.client)

    assert rca.source == RcaSource.TEMPLATE and "## Prevention" in rca.draft
    call = LLMCall.objects.get()
    assert call.purpose == "rca" and call.error.startswith("transient: 500")
    assert "LLM failed" in AuditEntry.objects.get(action="rca.draft").detail["fallback"]


def test_an_invalid_llm_answer_falls_back_to_the_template(llm, issue):
    api = FakeAPI(ok(tool_answer({**SECTIONS_ANSWER, "impact": ""})))

    rca = rca_draft(issue=issue, http_client=api.client)

    assert rca.source == RcaSource.TEMPLATE
    assert not LLMCall.objects.get().valid


def test_approval_records_edit_distance_seconds_spent_and_an_audit_entry(no_llm, issue):
    rca = rca_draft(issue=issue)
    rca_opened(rca=rca)
    RootCauseAnalysis.objects.filter(pk=rca.pk).update(opened_at=timezone.now() - timedelta(seconds=90))
    rca.refresh_from_db()
    edited = rca.draft.replace("## Impact", "## Impactxyz", 1)  # 3 characters added

    approved = rca_approve(rca=rca, text=edited, actor="owner")

    approved.refresh_from_db()
    assert approved.status == RcaStatus.APPROVED and approved.approved == edited
    assert approved.edit_distance == 3
    assert 90 <= approved.seconds_spent < 100
    assert approved.approved_by == "owner" and approved.approved_at is not None
    entry = AuditEntry.objects.get(action="rca.approve")
    assert entry.actor == "owner" and entry.detail["edit_distance"] == 3
    with pytest.raises(rca_module.RcaError):
        rca_approve(rca=approved, text=edited, actor="owner")


def test_opening_starts_the_clock_once(no_llm, issue):
    rca = rca_draft(issue=issue)
    rca_opened(rca=rca)
    first = RootCauseAnalysis.objects.get(pk=rca.pk).opened_at
    rca_opened(rca=rca)

    assert first is not None and RootCauseAnalysis.objects.get(pk=rca.pk).opened_at == first
    assert AuditEntry.objects.filter(action="rca.open").count() == 1


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("kitten", "sitting", 3), ("abc", "", 3), ("", "abc", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_edit_distance_is_levenshtein_in_characters(a, b, distance):
    assert edit_distance(a, b) == distance


def test_edit_distance_of_huge_texts_is_exact_and_quick():
    a = "first line\nsecond line\nthird line\n" * 20_000
    b = a[:300_000] + "X" * 11 + a[300_011:]

    started = time.monotonic()
    assert edit_distance(a, b) == 11  # the 11 characters that changed, not the line around them
    assert time.monotonic() - started < 5


def test_console_approve_flow(no_llm, admin_client, issue):
    rca = rca_draft(issue=issue)
    url = f"/admin/healing/rootcauseanalysis/{rca.pk}/change/"

    page = admin_client.get(url).content.decode()
    assert 'name="_approve"' in page and 'name="_save"' not in page
    assert "## Root cause" in page  # the draft, and the editable text prefilled with it
    rca.refresh_from_db()
    assert rca.opened_at is not None

    plain = admin_client.post(url, {"approved_text": rca.draft + "x"})
    assert plain.status_code == 302 and RootCauseAnalysis.objects.get(pk=rca.pk).status == RcaStatus.DRAFT

    response = admin_client.post(url, {"approved_text": rca.draft + "abc", "_approve": "Approve"})

    assert response.status_code == 302
    rca.refresh_from_db()
    assert rca.status == RcaStatus.APPROVED and rca.edit_distance == 3 and rca.seconds_spent is not None
    assert rca.approved == rca.draft + "abc"
    assert AuditEntry.objects.get(action="rca.approve").actor == "admin"
    listing = admin_client.get("/admin/healing/rootcauseanalysis/").content.decode()
    assert "template" in listing and "approved" in listing


def test_console_approval_ignores_the_browsers_line_ends(no_llm, admin_client, issue):
    rca = rca_draft(issue=issue)
    url = f"/admin/healing/rootcauseanalysis/{rca.pk}/change/"
    admin_client.get(url)

    admin_client.post(url, {"approved_text": rca.draft.replace("\n", "\r\n"), "_approve": "Approve"})

    rca.refresh_from_db()
    assert rca.edit_distance == 0 and rca.approved == rca.draft
