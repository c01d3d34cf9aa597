"""The Sentry protocol: key authentication, envelope framing, and events converted to reports."""

import uuid

import pytest

from healing.ingest import sentry
from healing.ingest.errors import IngestError
from healing.ingest.fingerprint import fingerprint_report
from tests.healing.ingest.sentry_support import envelope, sentry_event

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
