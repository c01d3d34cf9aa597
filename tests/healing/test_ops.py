"""Operations endpoints, the OpenAPI schema, and the demo command."""

import re

import pytest
from django.core.management import call_command

from healing.models import Project

SILENT = {"type": "SILENT_FAILURE", "message": "Generate did nothing"}


def test_healthz_reports_each_dependency(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {"database", "broker", "redis"}


def test_healthz_is_503_when_the_broker_is_down(client, db, monkeypatch):
    from kaizen_site import ops

    def refuse():
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(ops, "_check_broker", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "ConnectionRefusedError: broker down"}


def _metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:{{(.*)}})? ([0-9.e+]+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_metrics_count_reports_queue_depth_and_latency(scrape, post_report, drain):
    before = scrape()
    post_report(SILENT)
    post_report({"message": 5})  # invalid
    drain()
    after = scrape()
    assert after.startswith("# HELP")

    def delta(name, **labels):
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("kaizen_reports_received_total", source="native", outcome="accepted") == 1
    assert delta("kaizen_reports_received_total", source="native", outcome="invalid") == 1
    assert delta("kaizen_reports_ingested_total", type="SILENT_FAILURE", severity="P1", outcome="new_issue") == 1
    assert delta("kaizen_ingest_latency_seconds_count", source="native") == 2
    assert _metric(after, "kaizen_queue_depth", queue="P1") == 1
    assert _metric(after, "kaizen_queue_depth", queue="P0") == 0
    assert _metric(after, "kaizen_ingest_backlog") == 0


def test_openapi_schema_is_valid_and_documents_ingest(client, db):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["openapi"].startswith("3.1")
    operation = schema["paths"]["/api/v1/issues"]["post"]
    assert set(operation["responses"]) >= {"202", "400", "401", "413", "429"}
    assert {"ProjectKey": []} in operation["security"]
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_demo_command_creates_the_project_once_and_prints_its_key(capsys):
    call_command("kaizen_demo")
    first = capsys.readouterr().out
    project = Project.objects.get(slug="demo")
    key = project.keys.get()
    assert key.public_key in first and "secret key" in first and "password" in first
    assert f"http://{key.public_key}@127.0.0.1:8000/{project.id}" in first
    call_command("kaizen_demo")
    second = capsys.readouterr().out
    assert key.public_key in second and "secret key" not in second and "password" not in second
    assert Project.objects.count() == 1


def test_metrics_total_llm_calls_from_the_call_log(scrape, db):
    from decimal import Decimal

    from kaizen_site.models import LLMCall

    LLMCall.objects.create(purpose="diagnosis", model="m", prompt_fingerprint="f", tokens_in=100, tokens_out=20,
                           cost_usd=Decimal("0.0010"), valid=True)  # fmt: skip
    LLMCall.objects.create(
        purpose="diagnosis", model="m", prompt_fingerprint="f", tokens_in=50, tokens_out=0, valid=False
    )
    text = scrape()
    assert _metric(text, "kaizen_llm_calls_total", purpose="diagnosis", valid="true") == 1
    assert _metric(text, "kaizen_llm_calls_total", purpose="diagnosis", valid="false") == 1
    assert _metric(text, "kaizen_llm_tokens_total", direction="in") == 150
    assert _metric(text, "kaizen_llm_cost_usd_total") == 0.001


def test_the_owner_marking_false_positives_shows_in_metrics(admin_client, scrape, post_report, drain):
    from healing.models import Issue

    post_report({"type": "UX_CONFUSION", "message": "Rage clicks"})
    post_report({"type": "SLOW_RESPONSE", "message": "Slow page"})
    drain()
    noise = Issue.objects.get(type="UX_CONFUSION")
    response = admin_client.post(
        "/admin/healing/issue/", {"action": "mark_not_a_problem", "_selected_action": [str(noise.pk)]}
    )
    assert response.status_code == 302
    noise.refresh_from_db()
    assert noise.stage == "resolved"
    assert _metric(scrape(), "kaizen_false_positive_ratio") == 0.5
