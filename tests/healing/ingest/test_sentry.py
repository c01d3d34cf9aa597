"""Sentry-protocol ingest: auth, envelope framing, event conversion, the endpoints and their
rate-limit answer, and the real `sentry_sdk` reporting to a live server."""

import gzip
import types
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import sentry_sdk
from django.conf import settings
from prometheus_client import REGISTRY

from healing.ingest import accept as ingest
from healing.ingest import sentry
from healing.ingest.errors import IngestError
from healing.ingest.fingerprint import fingerprint_report
from healing.models import Issue, Occurrence
from tests.factories import ProjectKeyFactory

FROZEN_NOW = 1_700_000_000.0  # 20 s into a rate-limit window: Retry-After is 40


def envelope(*items, headers=None) -> bytes:
    """Items as (item header, payload); a dict payload is JSON. Newline-delimited unless the
    header gives a length, as SDKs write them."""
    parts = [orjson.dumps(headers if headers is not None else {})]
    for item_headers, payload in items:
        parts += [orjson.dumps(item_headers), orjson.dumps(payload) if isinstance(payload, dict) else payload]
    return b"\n".join(parts) + b"\n"


def sentry_event(**fields) -> dict:
    """An event as the Python SDK sends it for an exception raised while handling a request."""
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": "2024-05-01T12:00:00.123456Z",
        "platform": "python",
        "level": "error",
        "logger": "django.request",
        "server_name": "web-1",
        "release": "shop@1.2.3",
        "environment": "production",
        "transaction": "/checkout/{order_id}",
        "request": {"url": "https://shop.example.com/checkout/42", "method": "POST", "data": {"card": "[Filtered]"}},
        "user": {"id": "u-42", "email": "ada@example.com", "ip_address": "10.0.0.1"},
        "tags": {"region": "eu"},
        "breadcrumbs": {
            "values": [
                {"timestamp": 1714564799.5, "category": "http", "message": "POST /api/pay", "data": {"secret": "x"}},
                {"timestamp": "2024-05-01T11:59:59.900Z", "type": "default", "level": "info"},
            ]
        },
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": "'sku'",
                    "mechanism": {"type": "chained", "handled": True},
                    "stacktrace": {
                        "frames": [{"module": "shop.cart", "function": "line_items", "lineno": 7, "in_app": True}]
                    },
                },
                {
                    "type": "CheckoutFailed",
                    "value": "payment failed",
                    "module": "shop.errors",
                    "mechanism": {"type": "django", "handled": False},
                    "stacktrace": {
                        "frames": [
                            {
                                "module": "django.core.handlers.base",
                                "function": "_get_response",
                                "filename": "django/core/handlers/base.py",
                                "abs_path": "/venv/site-packages/django/core/handlers/base.py",
                                "lineno": 197,
                                "in_app": False,
                            },
                            {
                                "module": "shop.views",
                                "function": "checkout",
                                "filename": "shop/views.py",
                                "lineno": 42,
                                "in_app": True,
                                "context_line": "    raise CheckoutFailed('payment failed')",
                                "vars": {"order_id": "42"},
                            },
                        ]
                    },
                },
            ]
        },
        **fields,
    }


@pytest.fixture
def frozen_clock(monkeypatch):
    """One fixed rate-limit window, so a test never straddles two."""
    monkeypatch.setattr(ingest, "time", types.SimpleNamespace(time=lambda: FROZEN_NOW))


@pytest.fixture
def send(client, project_key):
    """POST a body to the project's Sentry endpoint; auth in the header (the Python SDK's way) by default."""

    def post(
        body: bytes,
        *,
        endpoint="envelope",
        project_id=None,
        key=None,
        auth="header",
        encoding=None,
        content_type="application/x-sentry-envelope",
        **headers,
    ):
        key = key or project_key.public_key
        path = f"/api/{project_id or project_key.project_id}/{endpoint}/"
        if auth == "header":
            headers["X-Sentry-Auth"] = f"Sentry sentry_version=7, sentry_client=sentry.python/2.0.0, sentry_key={key}"
        elif auth == "query":
            path += f"?sentry_key={key}&sentry_version=7&sentry_client=sentry.javascript.browser%2F8.0.0"
        if encoding == "gzip":
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        elif encoding == "deflate":
            body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
        return client.post(path, data=body, content_type=content_type, headers=headers)

    return post


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response.json()["error"] == code


# --- Auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "key"),
    [
        ({"X-Sentry-Auth": "Sentry sentry_version=7, sentry_key=abc123, sentry_client=x/1"}, {}, "abc123"),
        ({"X-Sentry-Auth": 'sentry sentry_key="abc123",sentry_version=7'}, {}, "abc123"),
        ({"Authorization": "Sentry sentry_key=abc123"}, {}, "abc123"),
        ({"Authorization": "Bearer abc123"}, {}, ""),
        ({}, {"sentry_key": "abc123", "sentry_version": "7"}, "abc123"),
        ({"X-Sentry-Auth": "Sentry sentry_key=fromheader"}, {"sentry_key": "fromquery"}, "fromheader"),
        ({"X-Sentry-Auth": "garbage"}, {}, ""),
        ({}, {}, ""),
    ],
)
def test_auth_key(headers, query, key):
    assert sentry.auth_key(headers=headers, query=query) == key


@pytest.mark.parametrize(
    ("dsn", "key"),
    [
        ("https://abc123@kaizen.example.com/7", "abc123"),
        ("https://kaizen.example.com/7", ""),
        (7, ""),
        ("http://[::1", ""),
    ],
)
def test_dsn_key(dsn, key):
    assert sentry.dsn_key(dsn) == key


# --- Envelope framing -------------------------------------------------------------------------


def test_envelope_items_newline_delimited_and_length_prefixed():
    binary = b"\x89PNG\r\n\x1a\n\x00\xff\nlast"
    body = (
        b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://k@h/1"}\n'
        b'{"type":"event","content_type":"application/json"}\n{"message":"a"}\n'
        + b'{"type":"attachment","length":%d,"filename":"shot.png"}\n' % len(binary)
        + binary
        + b'\n{"type":"session","length":13}\n{"sid":"abc"}\n'
        b'{"type":"client_report"}\n{"discarded_events":[]}'  # no trailing newline: the JS SDK's way
    )
    parsed = sentry.envelope_parse(body, max_event_bytes=1000)
    assert parsed.headers["event_id"] == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert [(i.type, i.payload) for i in parsed.items] == [
        ("event", b'{"message":"a"}'),
        ("attachment", binary),
        ("session", b'{"sid":"abc"}'),
        ("client_report", b'{"discarded_events":[]}'),
    ]


def test_envelope_header_only_and_trailing_newlines():
    assert sentry.envelope_parse(b"{}", max_event_bytes=10).items == ()
    parsed = sentry.envelope_parse(b'{}\n{"type":"event","length":2}\n{}\n\n\n', max_event_bytes=10)
    assert [i.payload for i in parsed.items] == [b"{}"]


def test_envelope_empty_payload_at_end():
    parsed = sentry.envelope_parse(b'{}\n{"type":"attachment","length":0}', max_event_bytes=10)
    assert parsed.items[0].payload == b""


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_envelope"),
        (b"\n\n", "empty_envelope"),
        (b"not json\n", "invalid_envelope_header"),
        (b"[1,2]\n", "invalid_envelope_header"),
        (b'{}\n{"type":"event","length":100}\n{}', "truncated_envelope"),
        (b'{}\n{"type":"event","length":2}\n{}xx\n', "invalid_envelope"),
        (b'{}\n{"type":"event","length":-1}\n{}', "invalid_item_length"),
        (b'{}\n{"type":"event","length":"2"}\n{}', "invalid_item_length"),
        (b'{}\n{"type":"event","length":2.0}\n{}', "invalid_item_length"),
        (b'{}\n{"type":"event","length":true}\n{}', "invalid_item_length"),
        (b'{}\n{"type":"event","length":18446744073709551616}\n{}', "invalid_item_length"),
        (b'{}\n{"length":2}\n{}', "invalid_item_header"),
        (b'{}\n{"type":""}\n{}', "invalid_item_header"),
        (b'{}\n{"type":"event"\n{}', "invalid_item_header"),
        (b'{}\n["event"]\n{}', "invalid_item_header"),
        (b'{}\n\n{"type":"event"}\n{}', "invalid_item_header"),
    ],
)
def test_envelope_malformed(body, code):
    with pytest.raises(IngestError) as caught:
        sentry.envelope_parse(body, max_event_bytes=1000)
    assert (caught.value.error_code, caught.value.status_code) == (code, 400)


def test_envelope_event_over_limit_is_413_but_big_attachment_is_not():
    with pytest.raises(IngestError) as caught:
        sentry.envelope_parse(envelope(({"type": "event"}, b"x" * 11)), max_event_bytes=10)
    assert caught.value.status_code == 413
    big = b"\n" * 50
    parsed = sentry.envelope_parse(envelope(({"type": "attachment", "length": len(big)}, big)), max_event_bytes=10)
    assert parsed.items[0].payload == big


def test_envelope_item_count_is_bounded():
    body = envelope(*[({"type": "client_report"}, {})] * (sentry.MAX_ITEMS + 1))
    with pytest.raises(IngestError) as caught:
        sentry.envelope_parse(body, max_event_bytes=10)
    assert caught.value.error_code == "too_many_items"


# --- Event conversion -------------------------------------------------------------------------


def test_event_becomes_native_report():
    event = sentry_event()
    report = sentry.event_report(event=event)
    assert report["event_id"] == str(uuid.UUID(event["event_id"]))
    assert report["type"] == "ERROR"
    assert report["message"] == "CheckoutFailed: payment failed"
    # The last chained exception is the one raised; frame fields outside the native shape are dropped.
    assert report["exception"] == {
        "type": "CheckoutFailed",
        "value": "payment failed",
        "stacktrace": [
            {
                "module": "django.core.handlers.base",
                "function": "_get_response",
                "filename": "django/core/handlers/base.py",
                "lineno": 197,
                "in_app": False,
            },
            {"module": "shop.views", "function": "checkout", "filename": "shop/views.py", "lineno": 42, "in_app": True},
        ],
    }
    assert report["user"] == {"id": "u-42", "email": "ada@example.com"}
    assert report["url"] == "https://shop.example.com/checkout/42"
    assert report["route"] == "/checkout/{order_id}"
    assert (report["release"], report["environment"]) == ("shop@1.2.3", "production")
    assert report["tags"] == {
        "region": "eu",
        "level": "error",
        "logger": "django.request",
        "server_name": "web-1",
        "mechanism": "django",
        "handled": "no",
    }
    assert report["timeline"] == [
        {"at": "2024-05-01T11:59:59.500000Z", "action": "http", "target": "", "detail": "POST /api/pay"},
        {"at": "2024-05-01T11:59:59.900000Z", "action": "default", "target": "", "detail": ""},
    ]
    assert report["timestamp"] == "2024-05-01T12:00:00.123456Z"
    assert "request" not in report  # a browser's `request` is the page, not a failing call to replay
    grouping = fingerprint_report(report).grouping
    assert grouping == "exception | CheckoutFailed | shop.views.checkout"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"logentry": {"formatted": "Payment 42 failed", "message": "Payment %s failed"}}, "Payment 42 failed"),
        ({"logentry": {"message": "Payment %s failed", "params": ["42"]}}, "Payment %s failed"),
        ({"message": "plain message"}, "plain message"),
        ({"message": {"formatted": "old interface"}}, "old interface"),
        ({"exception": {"values": [{"type": "ValueError", "value": "bad"}]}}, "ValueError: bad"),
        ({"exception": [{"type": "ValueError"}]}, "ValueError"),
        (
            {"csp": {"effective_directive": "script-src", "blocked_uri": "https://evil.example"}},
            "CSP: blocked script-src from https://evil.example",
        ),
        ({}, "<unlabeled event>"),
    ],
)
def test_message_precedence(fields, message):
    assert sentry.event_report(event=fields)["message"] == message


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"id": 42, "username": "ada"}, {"id": "42"}),
        ({"username": "ada", "ip_address": "10.0.0.1"}, {"id": "ada"}),
        ({"ip_address": "10.0.0.1", "email": "a@example.com"}, {"id": "10.0.0.1", "email": "a@example.com"}),
        ({"ip_address": "{{auto}}"}, None),
        ("not a user", None),
    ],
)
def test_user_fallbacks(user, expected):
    assert sentry.event_report(event={"message": "m", "user": user}).get("user") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714564800.25, "2024-05-01T12:00:00.250000Z"),
        (1714564800, "2024-05-01T12:00:00Z"),
        ("1714564800", "2024-05-01T12:00:00Z"),
        ("2024-05-01T12:00:00+02:00", "2024-05-01T12:00:00+02:00"),
        ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),  # no zone: UTC
        ("yesterday", None),
        (1e300, None),
        (True, None),
        ({"t": 1}, None),
    ],
)
def test_timestamps(value, expected):
    assert sentry.event_report(event={"message": "m", "timestamp": value}).get("timestamp") == expected


def test_tags_as_pairs_and_capped():
    pairs = [["browser", "Firefox"], ["n", 3], ["flag", True], ["bad"], "junk", ["k" * 300, "v" * 300]]
    tags = sentry.event_report(event={"message": "m", "tags": pairs})["tags"]
    assert tags == {"browser": "Firefox", "n": "3", "flag": "true", "k" * 200: "v" * 200}
    many = {f"t{i}": "x" for i in range(500)}
    assert len(sentry.event_report(event={"message": "m", "tags": many})["tags"]) == sentry.MAX_TAGS


def test_breadcrumbs_keep_the_newest_200():
    crumbs = [{"category": "ui.click", "message": f"click {i}"} for i in range(300)]
    timeline = sentry.event_report(event={"message": "m", "breadcrumbs": crumbs})["timeline"]
    assert len(timeline) == 200
    assert (timeline[0]["detail"], timeline[-1]["detail"]) == ("click 100", "click 299")


def test_event_id_forms():
    dashed = str(uuid.uuid4())
    assert sentry.event_report(event={"message": "m", "event_id": dashed})["event_id"] == dashed
    envelope_id = uuid.uuid4().hex
    report = sentry.event_report(event={"message": "m", "event_id": "not-an-id"}, event_id=envelope_id)
    assert report["event_id"] == str(uuid.UUID(envelope_id))
    assert "event_id" not in sentry.event_report(event={"message": "m"})  # ingest makes one
    assert sentry.event_id_hex(dashed) == dashed.replace("-", "")


def test_fingerprint_passthrough_and_default_marker():
    event = sentry_event(fingerprint=["{{default}}", "checkout", 7])
    report = sentry.event_report(event=event)
    assert report["fingerprint"] == ["{{ default }}", "checkout", "7"]
    assert (
        fingerprint_report(report).grouping
        == "custom | exception | CheckoutFailed | shop.views.checkout | checkout | 7"
    )
    assert "fingerprint" not in sentry.event_report(event={"message": "m", "fingerprint": []})


def test_odd_and_oversized_sdk_data_is_truncated_not_refused():
    deep: list = ["bottom"]
    for _ in range(100):  # deeper than native reports may nest: ignored, not refused
        deep = [deep]
    frames = [
        {"function": f"f{i}", "module": "m" * 300, "filename": "/" * 600, "lineno": "12", "in_app": "yes"}
        for i in range(300)
    ]
    event = {
        "event_id": 12345,
        "message": "x" * 10_000 + "\x00",
        "exception": {
            "values": [
                "junk",
                {
                    "type": "T" * 300,
                    "value": "v\x00" * 9000,
                    "stacktrace": {"frames": frames},
                    "mechanism": {"type": {"not": "text"}, "handled": []},
                },
            ]
        },
        "user": {"id": {"nested": 1}, "email": "e" * 300},
        "request": "https://not-a-dict.example",
        "transaction": ["not", "text"],
        "culprit": "shop.views in checkout",
        "release": "r" * 300,
        "environment": "e" * 100,
        "tags": "not tags",
        "breadcrumbs": 5,
        "fingerprint": "not a list",
        "contexts": {"deep": deep},
    }
    report = sentry.event_report(event=event)
    assert len(report["message"]) == 8192 and "\x00" not in report["message"]
    exception = report["exception"]
    assert (len(exception["type"]), len(exception["value"])) == (200, 8192)
    assert "\x00" not in exception["value"]
    assert len(exception["stacktrace"]) == 200
    assert exception["stacktrace"][-1] == {"function": "f299", "module": "m" * 200, "filename": "/" * 500}
    assert report["user"] == {"email": "e" * 254}
    assert (report["route"], len(report["release"]), len(report["environment"])) == ("shop.views in checkout", 200, 64)
    assert report["timeline"] == []
    assert not {"url", "tags", "fingerprint", "event_id"} & set(report)


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


# --- The real sentry_sdk against a live server ------------------------------------------------


@pytest.fixture
def sdk(live_server, project_key):
    """Initialise the real sentry_sdk with a DSN pointing at the live test server; closed after,
    so it cannot report anything from later tests."""
    url = urlsplit(live_server.url)
    dsn = f"http://{project_key.public_key}@{url.hostname}:{url.port}/{project_key.project_id}"

    def init(**options):
        sentry_sdk.init(
            dsn=dsn,
            default_integrations=False,  # no logging/threading hooks in the test process
            auto_enabling_integrations=False,  # and no Django integration reporting the server's own requests
            send_client_reports=False,
            http_proxy="",  # the server is local; no proxy from the environment
            project_root=str(Path(__file__).resolve().parents[3]),
            **options,
        )

    yield init
    client = sentry_sdk.get_client()
    pool = getattr(client.transport, "_pool", None)
    client.close(timeout=5)
    sentry_sdk.get_global_scope().set_client(None)
    if pool is not None:
        # The SDK keeps its HTTP connection alive, and the live server thread serving it holds a
        # database connection until it closes: the test database could not be dropped.
        pool.clear()


def checkout(order: dict) -> str:
    return order["sku"]  # raises KeyError: the in-app frame the issue is grouped by


def capture_checkout_failure() -> None:
    try:
        checkout({})
    except KeyError:
        sentry_sdk.capture_exception()


def test_real_sentry_sdk_reports_an_error_issue(sdk, drain, project):
    sdk(release="shop@2.0.0", environment="staging")
    with sentry_sdk.isolation_scope() as scope:
        scope.set_user({"id": "u-7", "email": "grace@example.com"})
        scope.set_tag("region", "eu")
        capture_checkout_failure()
        capture_checkout_failure()  # the same problem again: the same issue
    sentry_sdk.flush(timeout=10)
    drain()
    issue = Issue.objects.get(project=project)
    assert issue.type == "ERROR"
    assert issue.occurrence_count == 2 and issue.affected_users == 1
    assert issue.grouping == f"exception | KeyError | {__name__}.capture_checkout_failure | {__name__}.checkout"
    occurrences = list(issue.occurrences.all())
    assert len(occurrences) == 2
    for occurrence in occurrences:
        assert occurrence.source == "sentry"
        assert (occurrence.release, occurrence.environment) == ("shop@2.0.0", "staging")
        assert (occurrence.user_id, occurrence.user_email) == ("u-7", "grace@example.com")
        exception = occurrence.payload["exception"]
        assert (exception["type"], exception["value"]) == ("KeyError", "'sku'")
        in_app = [(f["module"], f["function"]) for f in exception["stacktrace"] if f.get("in_app")]
        assert in_app == [(__name__, "capture_checkout_failure"), (__name__, "checkout")]
        assert occurrence.payload["tags"]["region"] == "eu"
        assert occurrence.payload["tags"]["handled"] == "yes"


def _answered(outcome: str) -> float:
    return REGISTRY.get_sample_value("kaizen_reports_received_total", {"source": "sentry", "outcome": outcome}) or 0.0


def test_real_sentry_sdk_obeys_the_rate_limit_answer(sdk, drain, project):
    project.rate_limit_per_minute = 0  # every request is over the quota
    project.save()
    before = _answered("rate_limited"), _answered("accepted")
    sdk()
    capture_checkout_failure()
    sentry_sdk.flush(timeout=10)
    capture_checkout_failure()  # dropped by the SDK itself: it never reaches the server
    sentry_sdk.flush(timeout=10)
    assert (_answered("rate_limited"), _answered("accepted")) == (before[0] + 1, before[1])
    drain()
    assert not Occurrence.objects.exists()
