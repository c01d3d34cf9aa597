"""The Sentry envelope and store endpoints, and the project's quota."""

import uuid

import orjson
import pytest
from django.conf import settings
from prometheus_client import REGISTRY

from healing.models import Issue, Occurrence
from tests.factories import ProjectKeyFactory
from tests.healing.ingest.sentry_support import assert_error, envelope, sentry_event

# --- Endpoints --------------------------------------------------------------------------------


def test_python_sdk_envelope_is_stored_as_an_error_issue(send, drain, project):
    event = sentry_event()
    body = envelope(
        ({"type": "event"}, event), headers={"event_id": event["event_id"], "sent_at": "2024-05-01T12:00:01Z"}
    )
    response = send(body, encoding="gzip")
    assert response.status_code == 200, response.content
    assert response.json() == {"id": event["event_id"]}
    drain()
    occurrence = Occurrence.objects.select_related("issue").get()
    assert str(occurrence.event_id) == str(uuid.UUID(event["event_id"]))
    assert (occurrence.source, occurrence.release, occurrence.environment) == ("sentry", "shop@1.2.3", "production")
    assert (occurrence.user_id, occurrence.user_email) == ("u-42", "ada@example.com")
    assert (occurrence.url, occurrence.route) == ("https://shop.example.com/checkout/42", "/checkout/{order_id}")
    assert occurrence.payload["exception"]["type"] == "CheckoutFailed"
    issue = occurrence.issue
    assert (issue.project_id, issue.type, issue.title) == (project.id, "ERROR", "CheckoutFailed: payment failed")
    assert issue.grouping == "exception | CheckoutFailed | shop.views.checkout"


def test_browser_envelope_text_plain_with_query_key(send, drain, project):
    event = sentry_event(platform="javascript", request={"url": "https://app.example.com/cart"})
    body = envelope(({"type": "event"}, event))
    response = send(body, auth="query", content_type="text/plain;charset=UTF-8", Origin="https://app.example.com")
    assert response.status_code == 200, response.content
    drain()
    assert Occurrence.objects.get().url == "https://app.example.com/cart"


def test_browser_from_an_origin_the_project_does_not_allow(send):
    response = send(envelope(({"type": "event"}, sentry_event())), auth="query", Origin="https://evil.example")
    assert_error(response, 403, "origin_not_allowed")


def test_envelope_without_content_type(client, project_key, drain):
    response = client.generic(
        "POST",
        f"/api/{project_key.project_id}/envelope/?sentry_key={project_key.public_key}",
        data=envelope(({"type": "event"}, sentry_event())),
        content_type="",
    )
    assert response.status_code == 200, response.content
    drain()
    assert Occurrence.objects.count() == 1


def test_deflate_envelope(send, drain):
    assert send(envelope(({"type": "event"}, sentry_event())), encoding="deflate").status_code == 200
    drain()
    assert Occurrence.objects.count() == 1


def test_envelope_relayed_through_a_tunnel_authenticates_by_its_dsn(send, drain, project_key):
    dsn = f"https://{project_key.public_key}@kaizen.example.com/{project_key.project_id}"
    response = send(envelope(({"type": "event"}, sentry_event()), headers={"dsn": dsn}), auth=None)
    assert response.status_code == 200, response.content
    other = ProjectKeyFactory()
    dsn = f"https://{other.public_key}@kaizen.example.com/{other.project_id}"
    body = envelope(({"type": "event"}, sentry_event()), headers={"dsn": dsn})
    assert_error(send(body, auth=None), 403, "wrong_project")
    drain()
    assert Occurrence.objects.get().issue.project_id == project_key.project_id  # only the first


def _ignored(item_type: str) -> float:
    return REGISTRY.get_sample_value("kaizen_sentry_items_total", {"type": item_type, "outcome": "ignored"}) or 0.0


def test_items_without_errors_are_accepted_and_dropped(send, drain):
    before = {t: _ignored(t) for t in ("sessions", "client_report", "attachment", "transaction", "other")}
    png = b"\x89PNG\r\n\x1a\n\x00\x00\n"
    body = envelope(
        ({"type": "sessions"}, {"aggregates": [{"started": "2024-05-01T12:00:00Z", "exited": 3}]}),
        (
            {"type": "client_report"},
            {"discarded_events": [{"reason": "queue_overflow", "category": "error", "quantity": 1}]},
        ),
        ({"type": "transaction"}, {"type": "transaction", "transaction": "/checkout", "spans": []}),
        ({"type": "attachment", "length": len(png), "filename": "screen.png"}, png),
        ({"type": "some_future_item"}, b"\x00not json"),
    )
    response = send(body)
    assert response.status_code == 200, response.content
    assert response.json() == {}
    drain()
    assert not Occurrence.objects.exists()
    after = {t: _ignored(t) for t in before}
    assert all(after[t] == before[t] + 1 for t in before), (before, after)


def test_envelope_header_event_id_is_the_answer_without_an_event(send):
    event_id = uuid.uuid4().hex
    response = send(envelope(({"type": "attachment", "length": 1}, b"x"), headers={"event_id": event_id}))
    assert response.json() == {"id": event_id}


@pytest.mark.parametrize(
    ("body", "encoding", "status", "code"),
    [
        (b'{}\n{"type":"event","length":500}\n{"message":"cut short"}', None, 400, "truncated_envelope"),
        (b"this is not an envelope", None, 400, "invalid_envelope_header"),
        (b'{}\n{"type":"event"}\n{"message": broken', None, 400, "invalid_event"),
        (b'{}\n{"type":"event"}\n["an", "array"]', None, 400, "invalid_event"),
        (b"\x1f\x8b\x08\x00 this is not gzip at all", "raw-gzip", 400, "bad_encoding"),
    ],
)
def test_malformed_envelopes_are_400(send, drain, body, encoding, status, code):
    headers = {"Content-Encoding": "gzip"} if encoding == "raw-gzip" else {}
    assert_error(send(body, **headers), status, code)
    drain()
    assert not Occurrence.objects.exists()


def test_unknown_encoding_is_415(send):
    assert_error(send(envelope(), **{"Content-Encoding": "compress"}), 415, "unsupported_encoding")


def test_event_over_one_mib_is_413(send, drain):
    event = sentry_event(message="x" * settings.KAIZEN_MAX_EVENT_BYTES)
    assert_error(send(envelope(({"type": "event"}, event)), encoding="gzip"), 413, "too_large")
    drain()
    assert not Occurrence.objects.exists()


def test_envelope_over_its_cap_is_413_even_compressed(send, settings):
    settings.KAIZEN_MAX_ENVELOPE_BYTES = 4096
    body = envelope(({"type": "attachment", "length": 10_000}, b"\x00" * 10_000))
    assert_error(send(body), 413, "too_large")
    assert_error(send(body, encoding="gzip"), 413, "too_large")  # a few dozen bytes that inflate past the cap


def test_empty_body_is_400(send):
    assert_error(send(b""), 400, "empty_envelope")
    assert_error(send(b"", endpoint="store", content_type="application/json"), 400, "invalid_event")


@pytest.mark.parametrize("endpoint", ["envelope", "store"])
def test_key_of_another_project_is_403(send, endpoint):
    other = ProjectKeyFactory()
    assert_error(send(b"{}", endpoint=endpoint, project_id=other.project_id), 403, "wrong_project")


@pytest.mark.parametrize("endpoint", ["envelope", "store"])
def test_unknown_key_is_401(send, endpoint):
    response = send(b"{}", endpoint=endpoint, key="0" * 32)
    assert_error(response, 401, "unknown_key")
    assert response["WWW-Authenticate"].startswith("Sentry")


@pytest.mark.parametrize("endpoint", ["envelope", "store"])
def test_missing_auth_is_401(send, endpoint):
    assert_error(send(b"{}", endpoint=endpoint, auth=None), 401, "missing_key")


def test_revoked_key_is_403(send, project_key):
    project_key.is_active = False
    project_key.save()
    assert_error(send(envelope()), 403, "revoked_key")


def test_store_endpoint(send, drain):
    event = sentry_event()
    response = send(orjson.dumps(event), endpoint="store", content_type="application/json")
    assert response.json() == {"id": event["event_id"]}
    gzipped = sentry_event()
    response = send(orjson.dumps(gzipped), endpoint="store", content_type="application/json", encoding="gzip")
    assert response.json() == {"id": gzipped["event_id"]}
    drain()
    assert Occurrence.objects.filter(source="sentry").count() == 2
    assert Issue.objects.get().occurrence_count == 2  # the same exception twice is one issue


def test_store_drops_transactions_and_refuses_non_objects(send, drain):
    transaction = {"type": "transaction", "event_id": uuid.uuid4().hex, "transaction": "/checkout"}
    response = send(orjson.dumps(transaction), endpoint="store", content_type="application/json")
    assert response.json() == {"id": transaction["event_id"]}
    assert_error(send(b"[1]", endpoint="store", content_type="application/json"), 400, "invalid_event")
    drain()
    assert not Occurrence.objects.exists()


# --- The quota --------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["envelope", "store"])
def test_over_quota_answers_429_with_sentry_rate_limit_headers(send, project, frozen_clock, endpoint, ingest_written):
    project.rate_limit_per_minute = 1
    project.save()

    def body():
        event = sentry_event()
        return envelope(({"type": "event"}, event)) if endpoint == "envelope" else orjson.dumps(event)

    assert send(body(), endpoint=endpoint).status_code == 200
    response = send(body(), endpoint=endpoint)
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "40"
    assert response["X-Sentry-Rate-Limits"] == "40::project"
    assert ingest_written() == {"queued": 1, "occurrences": 1, "issues": 1}


def test_each_event_of_an_envelope_costs_one(send, project, drain, frozen_clock):
    project.rate_limit_per_minute = 2
    project.save()
    two = envelope(({"type": "event"}, sentry_event()), ({"type": "event"}, sentry_event()))
    assert send(two).status_code == 200
    assert send(envelope(({"type": "sessions"}, {}))).status_code == 200  # no event: no cost
    assert send(envelope(({"type": "event"}, sentry_event()))).status_code == 429
    drain()
    assert Occurrence.objects.count() == 2


def test_envelope_over_the_quota_after_parsing_stores_nothing(send, project, drain, frozen_clock):
    project.rate_limit_per_minute = 1
    project.save()
    response = send(envelope(({"type": "event"}, sentry_event()), ({"type": "event"}, sentry_event())))
    assert_error(response, 429, "rate_limited")
    assert response["X-Sentry-Rate-Limits"] == "40::project"
    drain()
    assert not Occurrence.objects.exists()


def test_schema_documents_both_endpoints(client):
    schema = client.get("/api/schema/").content.decode()
    assert "/api/{project_id}/envelope/" in schema and "/api/{project_id}/store/" in schema
