"""Every class of bad input gets a clear 4xx JSON body, and nothing is written."""

import gzip
import zlib

import brotli
import orjson
import pytest

from healing.models import Issue, Occurrence

GOOD = {"message": "Generate did nothing", "type": "SILENT_FAILURE"}


@pytest.fixture
def nothing_written(db, drain):
    yield
    drain()
    assert Occurrence.objects.count() == 0


def post_raw(client, key, body, content_type="application/json", **extra):
    return client.post("/api/v1/issues", data=body, content_type=content_type, HTTP_X_KAIZEN_KEY=key, **extra)


def error_of(response):
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    return response.status_code, body["error"]


def test_missing_key(client, db, nothing_written):
    response = client.post("/api/v1/issues", data=orjson.dumps(GOOD), content_type="application/json")
    assert error_of(response) == (401, "missing_key")


def test_unknown_key(post_report, nothing_written):
    assert error_of(post_report(GOOD, key="0" * 32)) == (401, "unknown_key")


def test_revoked_key_and_disabled_project(post_report, project_key, nothing_written):
    project_key.is_active = False
    project_key.save()
    assert error_of(post_report(GOOD)) == (403, "revoked_key")
    project_key.is_active = True
    project_key.save()
    project_key.project.is_active = False
    project_key.project.save()
    assert error_of(post_report(GOOD)) == (403, "project_disabled")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"message": "caf\xe9"}', "invalid_json"),  # invalid UTF-8
        (b"[1, 2]", "invalid_report"),
        (b'"just a string"', "invalid_report"),
        (b'{"message": "x\\u0000y"}', "invalid_characters"),
        (b'{"message": "x", "state": {"k\\u0000": 1}}', "invalid_characters"),
        (b'{"message": "x", "state": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "too_deep"),
        (b'{"message": "x", "state": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "too_deep"),
    ],
)
def test_malformed_bodies(client, project_key, nothing_written, body, code):
    status, error = error_of(post_raw(client, project_key.public_key, body))
    assert (status, error) == (400, code)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "message"),
        ({"message": 5}, "message"),
        ({"message": "x", "type": "NOT_A_TYPE"}, "type"),
        ({"message": "x" * 9000}, "message"),
        ({"message": "x", "user": {"id": "u" * 500}}, "user.id"),
        ({"message": "x", "timeline": [{"action": "click"}] * 201}, "timeline"),
        ({"message": "x", "request": {"method": "GET /", "path": "/"}}, "request.method"),
        ({"message": "x", "request": {"method": "GET", "path": "/", "status": "500"}}, "request.status"),
        ({"message": "x", "unexpected": 1}, "unexpected"),
        ({"message": "x", "recording": "not base64!!"}, "recording"),
        ({"message": "x", "recording": "aGVsbG8="}, "recording"),  # base64, but not gzip
        ({"message": "x", "event_id": "nope"}, "event_id"),
    ],
)
def test_wrong_fields_name_the_field(post_report, nothing_written, payload, field):
    response = post_report(payload)
    assert error_of(response) == (400, "invalid_report")
    assert field in [e["field"] for e in response.json()["detail"]]


def test_oversized_body_is_413(client, project_key, nothing_written, settings):
    settings.KAIZEN_MAX_BODY_BYTES = 1000
    body = orjson.dumps({"message": "x", "description": "y" * 2000})
    assert error_of(post_raw(client, project_key.public_key, body)) == (413, "too_large")


def test_zip_bomb_is_413(client, project_key, nothing_written, settings):
    settings.KAIZEN_MAX_BODY_BYTES = 10_000
    body = gzip.compress(orjson.dumps({"message": "x", "description": "y" * 1_000_000}))
    assert len(body) < 10_000
    response = post_raw(client, project_key.public_key, body, HTTP_CONTENT_ENCODING="gzip")
    assert error_of(response) == (413, "too_large")
    bomb = brotli.compress(orjson.dumps({"message": "x", "description": "y" * 1_000_000}))
    response = post_raw(client, project_key.public_key, bomb, HTTP_CONTENT_ENCODING="br")
    assert error_of(response) == (413, "too_large")


def test_bad_gzip_and_unknown_encoding(client, project_key, nothing_written):
    response = post_raw(client, project_key.public_key, b"\x1f\x8bnot really gzip", HTTP_CONTENT_ENCODING="gzip")
    assert error_of(response) == (400, "bad_encoding")
    response = post_raw(client, project_key.public_key, orjson.dumps(GOOD), HTTP_CONTENT_ENCODING="zstd")
    assert error_of(response) == (415, "unsupported_encoding")
    response = post_raw(client, project_key.public_key, b"not brotli at all", HTTP_CONTENT_ENCODING="br")
    assert error_of(response) == (400, "bad_encoding")
    truncated = brotli.compress(orjson.dumps({**GOOD, "description": "z" * 5000}))[:-4]
    response = post_raw(client, project_key.public_key, truncated, HTTP_CONTENT_ENCODING="br")
    assert error_of(response) == (400, "bad_encoding")


def test_wrong_content_type(client, project_key, nothing_written):
    response = post_raw(client, project_key.public_key, b"message=x", content_type="application/x-www-form-urlencoded")
    assert error_of(response) == (415, "unsupported_media_type")


def test_wrong_method(client, project_key, nothing_written):
    response = client.get("/api/v1/issues", HTTP_X_KAIZEN_KEY=project_key.public_key)
    assert error_of(response) == (405, "method_not_allowed")


def test_compressed_and_text_plain_bodies_are_accepted(client, project_key, drain):
    gz = post_raw(client, project_key.public_key, gzip.compress(orjson.dumps(GOOD)), HTTP_CONTENT_ENCODING="gzip")
    df = post_raw(client, project_key.public_key, zlib.compress(orjson.dumps(GOOD)), HTTP_CONTENT_ENCODING="deflate")
    br = post_raw(client, project_key.public_key, brotli.compress(orjson.dumps(GOOD)), HTTP_CONTENT_ENCODING="br")
    text = client.post(
        f"/api/v1/issues?key={project_key.public_key}", data=orjson.dumps(GOOD), content_type="text/plain;charset=UTF-8"
    )
    assert [r.status_code for r in (gz, df, br, text)] == [202, 202, 202, 202]
    drain()
    assert Issue.objects.get().occurrence_count == 4


def test_rate_limit_answers_429_with_retry_after(post_report, project_key, ingest_written):
    project_key.project.rate_limit_per_minute = 2
    project_key.project.save()
    assert [post_report(GOOD).status_code for _ in range(2)] == [202, 202]
    response = post_report(GOOD)
    assert error_of(response) == (429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert ingest_written() == {"queued": 2, "occurrences": 2, "issues": 1}
