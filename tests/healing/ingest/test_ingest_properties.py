"""Generated bad input against the three ingest endpoints, through the real request path, in the
stream mode (Redis) and the direct mode (the database).

The property, for every body: never a 5xx; a 4xx is a JSON `{"error", "detail"}` body, is logged
once, and writes nothing (no stream entry, no occurrence, no issue); a 2xx stores exactly one
occurrence per event it accepted. Bodies are arbitrary JSON, mutated valid reports and events,
envelopes with mangled framing, random bytes, and any of those under a right, wrong or unknown
Content-Encoding.

Bounded and derandomized (tests.strategies.PROPERTY), so CI stays fast and a failure reproduces.
"""

import gzip
import json
import math
import uuid
import zlib
from datetime import UTC, timedelta, timezone
from urllib.parse import quote

import brotli
import pytest
import redis
from django.conf import settings
from hypothesis import assume, event, example, given, note
from hypothesis import strategies as st

from healing.ingest import accept
from healing.models import Issue, IssueType, Occurrence
from tests.strategies import PROPERTY, as_json, json_scalars, json_values

pytestmark = [pytest.mark.django_db, pytest.mark.parametrize("ingest_mode", ["stream", "direct"], indirect=True)]

# --- Strategies -------------------------------------------------------------------------------

texts = st.text(max_size=40)
zones = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=30))])
iso_times = st.datetimes(timezones=zones).map(lambda d: d.isoformat())

frames = st.fixed_dictionaries(
    {},
    optional={"module": texts, "function": texts, "filename": texts, "lineno": st.integers(), "in_app": st.booleans()},
)
valid_reports = st.fixed_dictionaries(
    {"message": st.text(max_size=120)},
    optional={
        "event_id": st.uuids().map(str),
        "type": st.sampled_from(IssueType.values),
        "fingerprint": st.lists(texts, min_size=1, max_size=3),
        "user": st.fixed_dictionaries({}, optional={"id": texts, "email": texts}),
        "session_id": texts,
        "url": texts,
        "route": texts,
        "exception": st.fixed_dictionaries(
            {"type": texts}, optional={"value": texts, "stacktrace": st.lists(frames, max_size=3)}
        ),
        "timeline": st.lists(
            st.fixed_dictionaries({"action": texts}, optional={"at": iso_times, "target": texts}), max_size=3
        ),
        "console": st.lists(
            st.fixed_dictionaries({"message": texts}, optional={"level": st.sampled_from(["log", "error", "x"])}),
            max_size=2,
        ),
        "request": st.fixed_dictionaries(
            {"method": st.sampled_from(["GET", "POST", "get", "P0ST"]), "path": texts},
            optional={
                "headers": st.dictionaries(texts, texts, max_size=3),
                "query": st.dictionaries(texts, texts, max_size=2),
                "body": json_values,
                "status": st.integers(min_value=-5, max_value=1200),
            },
        ),
        "state": st.dictionaries(texts, json_values, max_size=3),
        "tags": st.dictionaries(texts, texts, max_size=3),
        "timestamp": iso_times | st.integers(min_value=-(10**12), max_value=10**12),
        "release": texts,
        "environment": st.text(max_size=70),
        "description": texts,
    },
)

sentry_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.uuids().map(lambda u: u.hex) | texts,
        "message": texts | st.fixed_dictionaries({}, optional={"formatted": texts, "message": json_values}),
        "logentry": st.fixed_dictionaries({}, optional={"formatted": json_values, "message": texts}),
        "exception": st.fixed_dictionaries(
            {},
            optional={
                "values": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "type": json_scalars,
                            "value": json_scalars,
                            "mechanism": st.fixed_dictionaries({}, optional={"handled": json_scalars}),
                            "stacktrace": st.fixed_dictionaries({}, optional={"frames": st.lists(frames, max_size=3)}),
                        },
                    ),
                    max_size=3,
                )
            },
        ),
        "timestamp": st.floats(min_value=-1e13, max_value=1e13) | iso_times | json_scalars,
        "user": st.dictionaries(st.sampled_from(["id", "username", "ip_address", "email"]), json_scalars),
        "tags": st.dictionaries(texts, json_scalars, max_size=3) | st.lists(st.lists(json_scalars, max_size=3)),
        "breadcrumbs": st.fixed_dictionaries(
            {}, optional={"values": st.lists(st.dictionaries(texts, json_scalars, max_size=4), max_size=3)}
        ),
        "fingerprint": st.lists(json_scalars, max_size=4) | json_scalars,
        "level": json_scalars,
        "release": json_scalars,
        "environment": json_scalars,
        "transaction": json_scalars,
        "request": st.fixed_dictionaries({}, optional={"url": json_scalars}),
        "type": st.sampled_from(["error", "transaction", "default"]),
    },
)


@st.composite
def mutated(draw, base):
    """`base` with up to three random edits anywhere in the tree: a value replaced by any JSON, a
    key or element removed, an unexpected key added."""
    value = json.loads(json.dumps(draw(base)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        node = value
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "replace":
                node[key] = draw(json_values)
            elif action == "remove":
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
            else:
                node.append(draw(json_values))
            break
    return value


ENCODINGS = ["", "identity", "gzip", "x-gzip", "deflate", "br", "compress", "gzip, br", "GZIP"]


@st.composite
def encoded(draw, body: bytes) -> tuple[bytes, str]:
    """The body under a Content-Encoding: applied faithfully, or claimed without being applied."""
    encoding = draw(st.sampled_from(ENCODINGS))
    if draw(st.sampled_from(range(4))) > 0:
        name = encoding.lower()
        if name in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif name == "deflate":
            body = zlib.compress(body) if draw(st.booleans()) else zlib.compress(body)[2:-4]  # zlib or raw
        elif name == "br":
            body = brotli.compress(body)
    if body and draw(st.sampled_from(range(10))) == 9:
        body = body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]  # cut short on the wire
    return body, encoding


native_bodies = st.one_of(
    mutated(valid_reports).map(as_json),
    valid_reports.map(as_json),
    json_values.map(as_json),
    st.binary(max_size=600),
)


@st.composite
def envelopes(draw) -> bytes:
    """Sentry envelopes: items of any type with real or mangled payloads, framed by length or by
    newline, then possibly corrupted byte-wise."""
    items = []
    events = draw(st.lists(mutated(sentry_events), max_size=4))
    ids = draw(st.lists(st.uuids(), min_size=len(events), max_size=len(events), unique=True))
    for item, event_id in zip(events, ids, strict=True):
        if isinstance(item, dict) and draw(st.sampled_from(range(4))) > 0:
            # Several events in one envelope each carry their own id (an envelope's id belongs
            # to one event; what several id-less events get is settled elsewhere).
            item["event_id"] = event_id.hex
        payload = as_json(item)
        items.append(({"type": draw(st.sampled_from(["event", "event", "security"]))}, payload))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        kind = draw(st.sampled_from(["attachment", "session", "client_report", "transaction", "profile"]) | texts)
        items.append(({"type": kind}, draw(st.binary(max_size=80))))
    items = draw(st.permutations(items))
    header = {}
    if len(events) <= 1 and draw(st.booleans()):
        header["event_id"] = draw(st.uuids()).hex
    if draw(st.booleans()):
        header["sent_at"] = draw(iso_times)
    parts = [as_json(header)]
    for item_header, payload in items:
        framing = draw(st.sampled_from(["length", "newline", "length", "newline", "wrong-length"]))
        if framing == "length":
            item_header = {**item_header, "length": len(payload)}
        elif framing == "wrong-length":
            item_header = {**item_header, "length": draw(json_scalars)}
        parts += [as_json(item_header), payload]
    body = b"\n".join(parts) + draw(st.sampled_from([b"", b"\n", b"\n\n"]))
    if draw(st.sampled_from(range(6))) == 5:  # flip a byte (sampled: integers lean towards 0)
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(min_value=0, max_value=255))]) + body[at + 1 :]
    return body


# --- The property -----------------------------------------------------------------------------


def _stream() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


class Example:
    """One generated request's bookkeeping. All examples of a test share its database transaction,
    so each starts by clearing what the previous one stored and logged. What ingest accepted is
    read from `accept.reports_accept`'s answer (a spy that calls through): an SDK may be answered
    with an event id it sent even when the event is dropped, so the response alone cannot say."""

    def __init__(self, *, caplog, ingest_written, monkeypatch) -> None:
        self.caplog, self.ingest_written = caplog, ingest_written
        self.accepted: list[accept.Accepted] = []
        real = accept.reports_accept

        def spy(**kwargs):
            answer = real(**kwargs)
            self.accepted.extend(answer)
            return answer

        monkeypatch.setattr(accept, "reports_accept", spy)

    def start(self) -> None:
        self.caplog.clear()
        self.accepted.clear()
        Issue.objects.all().delete()  # occurrences, users and events go with their issue
        _stream().delete(settings.KAIZEN_INGEST_STREAM)

    def check(self, response) -> None:
        status = response.status_code
        note(f"answered {status}: {response.content[:300]!r}")
        event(f"{status} {response.json()['error']}" if 400 <= status < 500 else str(status))
        assert status < 500
        if status >= 400:
            assert response["Content-Type"].startswith("application/json")
            body = response.json()
            assert set(body) == {"error", "detail"}
            assert isinstance(body["error"], str) and body["error"]
            refusals = [r for r in self.caplog.records if r.name == "kaizen.api" and r.msg == "api request refused"]
            assert [(r.status, r.error) for r in refusals] == [(status, body["error"])]  # logged, once
            assert self.ingest_written() == {"queued": 0, "occurrences": 0, "issues": 0}
            return
        assert status in (200, 202)
        streamed = settings.KAIZEN_INGEST_MODE == "stream"
        written = self.ingest_written()
        assert written["queued"] == (len(self.accepted) if streamed else 0)
        assert {o.event_id for o in Occurrence.objects.all()} == {uuid.UUID(a.event_id) for a in self.accepted}
        assert written["occurrences"] == len({a.event_id for a in self.accepted})
        assert written["issues"] == len({a.issue_id for a in self.accepted})


@pytest.fixture
def ingest_example(caplog, ingest_written, monkeypatch) -> Example:
    return Example(caplog=caplog, ingest_written=ingest_written, monkeypatch=monkeypatch)


@pytest.fixture(autouse=True)
def ingest_mode(request, settings):
    """Each test runs in the stream mode (Redis) and the direct mode (the database, Redis's fallback)."""
    mode = request.param
    if mode == "stream" and not settings.REDIS_URL:
        pytest.skip("the stream mode needs Redis")
    settings.KAIZEN_INGEST_MODE = mode
    return mode


# --- Native endpoint --------------------------------------------------------------------------

CONTENT_TYPES = ["application/json", "text/plain;charset=UTF-8", "application/json; charset=utf-8", "text/csv"]


@PROPERTY
@given(data=st.data())
def test_native_endpoint(client, project_key, ingest_example, data):
    ingest_example.start()
    body, encoding = data.draw(native_bodies.flatmap(encoded))
    headers = {"X-Kaizen-Key": project_key.public_key}
    if encoding:
        headers["Content-Encoding"] = encoding
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    response = client.post("/api/v1/issues", data=body, content_type=content_type, headers=headers)
    ingest_example.check(response)


@PROPERTY
@given(report=mutated(valid_reports))
def test_native_endpoint_mutated_reports_plain(client, project_key, ingest_example, report):
    """Mutated reports alone, serialized faithfully: most reach validation rather than the parser."""
    ingest_example.start()
    assume(all(not (isinstance(v, float) and not math.isfinite(v)) for v in _leaves(report)))
    response = client.post(
        "/api/v1/issues",
        data=as_json(report),
        content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key,
    )
    ingest_example.check(response)


def _leaves(value):
    if isinstance(value, dict):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child)
    else:
        yield value


# --- Sentry endpoints -------------------------------------------------------------------------


AUTH = ["header", "header", "header", "query", "none", "unknown"]


def sentry_post(client, project_key, endpoint: str, body: bytes, *, encoding: str, auth: str, content_type: str):
    path = f"/api/{project_key.project_id}/{endpoint}/"
    headers = {}
    if auth == "header":
        headers["X-Sentry-Auth"] = f"Sentry sentry_version=7, sentry_key={project_key.public_key}"
    elif auth == "query":
        path += f"?sentry_key={project_key.public_key}"
    elif auth == "unknown":
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={uuid.uuid4().hex}"
    if encoding:
        headers["Content-Encoding"] = encoding
    return client.post(path, data=body, content_type=content_type, headers=headers)


store_bodies = st.one_of(
    mutated(sentry_events).map(as_json), sentry_events.map(as_json), json_values.map(as_json), st.binary(max_size=600)
)


@PROPERTY
@given(data=st.data())
def test_sentry_store_endpoint(client, project_key, ingest_example, data):
    ingest_example.start()
    body, encoding = data.draw(store_bodies.flatmap(encoded))
    auth = data.draw(st.sampled_from(AUTH))
    content_type = data.draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
    response = sentry_post(client, project_key, "store", body, encoding=encoding, auth=auth, content_type=content_type)
    ingest_example.check(response)


@PROPERTY
@given(data=st.data())
def test_sentry_envelope_endpoint(client, project_key, ingest_example, data):
    ingest_example.start()
    body, encoding = data.draw(
        st.one_of(envelopes(), envelopes(), envelopes(), st.binary(max_size=600)).flatmap(encoded)
    )
    auth = data.draw(st.sampled_from(AUTH))
    content_type = data.draw(st.sampled_from(["application/x-sentry-envelope", "text/plain;charset=UTF-8", ""]))
    response = sentry_post(
        client, project_key, "envelope", body, encoding=encoding, auth=auth, content_type=content_type
    )
    ingest_example.check(response)


# --- Keys -------------------------------------------------------------------------------------

KEYED_PATHS = ["/api/v1/issues?key={}", "/api/{project}/store/?sentry_key={}", "/api/{project}/envelope/?sentry_key={}"]


@PROPERTY
@given(key=st.text(min_size=1, max_size=80), path=st.sampled_from(KEYED_PATHS), origin=st.booleans())
@example(key="\x00", path=KEYED_PATHS[0], origin=True)
@example(key="ab\x00cd", path=KEYED_PATHS[1], origin=False)
@example(key="k" * 65, path=KEYED_PATHS[2], origin=True)
def test_any_key_in_the_query(client, project_key, ingest_example, key, path, origin):
    """Browsers send the key in the query, where it can hold anything (a NUL included), and the
    CORS check reads it before authentication does."""
    ingest_example.start()
    assume(key != project_key.public_key)
    url = path.replace("{project}", str(project_key.project_id)).format(quote(key, safe=""))
    headers = {"Origin": "https://app.example.com"} if origin else {}
    response = client.post(url, data=b'{"message": "x"}', content_type="text/plain", headers=headers)
    assert response.status_code in (401, 403)
    ingest_example.check(response)
    flags = client.get(f"/api/v1/flags?user=1&key={quote(key, safe='')}", headers=headers)
    assert flags.status_code in (401, 403) and set(flags.json()) == {"error", "detail"}
