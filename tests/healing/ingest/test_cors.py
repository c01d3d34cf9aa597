"""Browsers may report only from the origins their project lists."""

import orjson
import pytest

from tests.factories import ProjectKeyFactory

REPORT = orjson.dumps({"type": "SILENT_FAILURE", "message": "Generate did nothing"})
NOTHING = {"queued": 0, "occurrences": 0, "issues": 0}


@pytest.fixture
def key(db):
    return ProjectKeyFactory(project__allowed_origins=["https://app.example.com"])


def post(client, key, origin):
    return client.post(
        f"/api/v1/issues?key={key.public_key}", data=REPORT, content_type="text/plain", HTTP_ORIGIN=origin
    )


def test_an_allowed_origin_gets_cors_headers_and_is_accepted(client, key, ingest_written):
    response = post(client, key, "https://app.example.com")
    assert response.status_code == 202
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert ingest_written()["occurrences"] == 1


def test_another_origin_is_refused_and_gets_no_cors_headers(client, key, ingest_written):
    response = post(client, key, "https://evil.example.net")
    assert (response.status_code, response.json()["error"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response
    assert ingest_written() == NOTHING


def test_an_origin_allowed_for_another_project_does_not_help(client, key, ingest_written):
    ProjectKeyFactory(project__allowed_origins=["https://other.example.org"])
    response = post(client, key, "https://other.example.org")
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response
    assert ingest_written() == NOTHING


def test_sandboxed_null_origin_is_refused(client, key, ingest_written):
    assert post(client, key, "null").status_code == 403
    assert ingest_written() == NOTHING


def test_preflight_for_the_header_form(client, key):
    ok = client.options(
        "/api/v1/issues",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-kaizen-key",
    )
    assert ok["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-kaizen-key" in ok["Access-Control-Allow-Headers"]
    refused = client.options(
        "/api/v1/issues", HTTP_ORIGIN="https://evil.example.net", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "Access-Control-Allow-Origin" not in refused


def test_server_side_reports_need_no_origin(client, key, ingest_written):
    response = client.post(
        "/api/v1/issues", data=REPORT, content_type="application/json", HTTP_X_KAIZEN_KEY=key.public_key
    )
    assert response.status_code == 202
    assert ingest_written()["occurrences"] == 1
