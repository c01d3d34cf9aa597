"""Sentry envelopes carrying several events, de-duplication by (project, event id), and chunked
request bodies (no Content-Length)."""

import io
import uuid
from pathlib import Path

import orjson
import pytest
import requests

from healing.models import Occurrence
from tests.factories import ProjectKeyFactory

ROOT = Path(__file__).resolve().parents[3]


def _envelope(events: list[dict], *, header_id: str | None = None) -> bytes:
    lines = [orjson.dumps({"event_id": header_id} if header_id else {})]
    for event in events:
        lines += [orjson.dumps({"type": "event"}), orjson.dumps(event)]
    return b"\n".join(lines) + b"\n"


def _post_envelope(client, project_key, body: bytes, **extra):
    return client.post(
        f"/api/{project_key.project_id}/envelope/",
        data=body,
        content_type="application/x-sentry-envelope",
        headers={"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={project_key.public_key}"},
        **extra,
    )


def _stored_ids(project_key) -> set[str]:
    return {e.hex for e in Occurrence.objects.filter(project=project_key.project).values_list("event_id", flat=True)}


def test_fifty_events_in_one_envelope_are_fifty_occurrences(client, project_key, drain):
    events = [{"message": f"boom {i % 3}"} for i in range(50)]  # no ids of their own
    header_id = uuid.uuid4().hex
    response = _post_envelope(client, project_key, _envelope(events, header_id=header_id))
    assert response.status_code == 200, response.content
    assert response.json() == {"id": header_id}  # the first event took the header's id
    drain()
    ids = _stored_ids(project_key)
    assert len(ids) == 50
    assert header_id in ids


def test_each_event_keeps_its_own_id(client, project_key, drain):
    own = [uuid.uuid4().hex for _ in range(3)]
    events = [{"event_id": own[0], "message": "a"}, {"message": "b"}, {"event_id": own[1], "message": "c"},
              {"message": "d"}, {"event_id": own[2], "message": "e"}]  # fmt: skip
    header_id = uuid.uuid4().hex
    response = _post_envelope(client, project_key, _envelope(events, header_id=header_id))
    assert response.json() == {"id": own[0]}
    drain()
    ids = _stored_ids(project_key)
    assert len(ids) == 5
    assert set(own) <= ids
    assert header_id not in ids  # the first event had its own: the header's names no other


def test_a_resend_is_one_occurrence_even_if_it_groups_elsewhere(post_report, project_key, drain):
    """Dedupe is by (project, event id): a resend that changed grouping is still the same event."""
    event_id = str(uuid.uuid4())
    assert post_report({"event_id": event_id, "message": "first wording"}).status_code == 202
    drain()  # stored before the resend arrives: not de-duplicated within one batch
    assert post_report({"event_id": event_id, "message": "reworded", "fingerprint": ["other"]}).status_code == 202
    drain()
    assert Occurrence.objects.filter(event_id=event_id).count() == 1
    assert sum(o.issue.occurrence_count for o in Occurrence.objects.select_related("issue")) == 1


def test_one_event_id_in_two_projects_is_two_occurrences(post_report, drain):
    event_id = str(uuid.uuid4())
    other = ProjectKeyFactory()
    assert post_report({"event_id": event_id, "message": "x"}).status_code == 202
    assert post_report({"event_id": event_id, "message": "x"}, key=other.public_key).status_code == 202
    drain()
    assert Occurrence.objects.filter(event_id=event_id).count() == 2


# --- Chunked bodies ---------------------------------------------------------------------------


def _chunked(body: bytes, *, terminated: bool) -> dict:
    """What a WSGI server passes for a chunked body: no Content-Length, and from gunicorn an input
    that ends where the body ends (the test client's own input refuses reads past its length)."""
    environ = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": terminated}
    return environ | ({"wsgi.input": io.BytesIO(body)} if terminated else {})


def test_chunked_native_report_is_read(client, project_key, drain):
    body = orjson.dumps({"message": "sent in chunks"})
    response = client.post(
        "/api/v1/issues", data=body, content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key, **_chunked(body, terminated=True),
    )  # fmt: skip
    assert response.status_code == 202, response.content
    drain()
    assert Occurrence.objects.get(event_id=response.json()["event_id"]).message == "sent in chunks"


def test_chunked_envelope_is_read(client, project_key, drain):
    event_id = uuid.uuid4().hex
    body = _envelope([{"event_id": event_id, "message": "chunked"}])
    response = _post_envelope(client, project_key, body, **_chunked(body, terminated=True))
    assert response.json() == {"id": event_id}
    drain()
    assert _stored_ids(project_key) == {event_id}


def test_chunked_body_over_the_cap_is_413(client, project_key, settings):
    settings.KAIZEN_MAX_BODY_BYTES = 100
    body = orjson.dumps({"message": "x" * 200})
    response = client.post(
        "/api/v1/issues", data=body, content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key, **_chunked(body, terminated=True),
    )  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert not Occurrence.objects.exists()


@pytest.mark.parametrize("endpoint", ["native", "store", "envelope"])
def test_chunked_body_a_server_cannot_end_is_411(client, project_key, drain, endpoint):
    body = orjson.dumps({"message": "x"}) if endpoint != "envelope" else _envelope([{"message": "x"}])
    if endpoint == "native":
        response = client.post("/api/v1/issues", data=body, content_type="application/json",
                               HTTP_X_KAIZEN_KEY=project_key.public_key, **_chunked(body, terminated=False))  # fmt: skip
    else:
        response = client.post(
            f"/api/{project_key.project_id}/{endpoint}/", data=body, content_type="application/json",
            headers={"X-Sentry-Auth": f"Sentry sentry_key={project_key.public_key}"}, **_chunked(body, terminated=False),
        )  # fmt: skip
    assert response.status_code == 411, response.content
    assert response.json()["error"] == "length_required"
    drain()
    assert not Occurrence.objects.exists()


def _chunks(data: bytes, size: int = 7):
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.slow
def test_chunked_bodies_through_the_served_api(served, project_key, drain):
    # A generator body: requests sends it chunked, without Content-Length.
    native = requests.post(
        f"{served}/api/v1/issues", data=_chunks(orjson.dumps({"message": "chunked native"})), timeout=10,
        headers={"Content-Type": "application/json", "X-Kaizen-Key": project_key.public_key},
    )  # fmt: skip
    assert native.request.headers.get("Transfer-Encoding") == "chunked"
    assert native.status_code == 202, native.text
    event_id = uuid.uuid4().hex
    envelope = requests.post(
        f"{served}/api/{project_key.project_id}/envelope/", timeout=10,
        data=_chunks(_envelope([{"event_id": event_id, "message": "chunked sentry"}])),
        headers={"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={project_key.public_key}"},
    )  # fmt: skip
    assert envelope.status_code == 200, envelope.text
    assert envelope.json() == {"id": event_id}
    drain()
    messages = dict(Occurrence.objects.values_list("event_id", "message"))
    assert messages == {uuid.UUID(native.json()["event_id"]): "chunked native", uuid.UUID(event_id): "chunked sentry"}


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_every_line_of_a_body_is_read_through_the_served_api(served, project_key, drain, chunked):
    """A server's `wsgi.input` need not be a full file: granian's stops a read() that follows a
    readline() or a partial read at nothing. An envelope is read to its last line, and a report
    written over several lines is read whole, whichever way the body arrives."""
    events = [{"event_id": uuid.uuid4().hex, "message": f"line {n}"} for n in range(5)]
    body = _envelope(events)
    assert body.count(b"\n") == 11
    envelope = requests.post(
        f"{served}/api/{project_key.project_id}/envelope/", timeout=10,
        data=_chunks(body, size=50) if chunked else body,
        headers={"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={project_key.public_key}"},
    )  # fmt: skip
    assert envelope.status_code == 200, envelope.text
    report = orjson.dumps({"message": "over\nseveral\nlines", "route": "/multi"}, option=orjson.OPT_INDENT_2)
    assert report.count(b"\n") >= 2
    native = requests.post(
        f"{served}/api/v1/issues", data=_chunks(report, size=9) if chunked else report, timeout=10,
        headers={"Content-Type": "text/plain", "X-Kaizen-Key": project_key.public_key},
    )  # fmt: skip
    assert native.status_code == 202, native.text
    drain()
    assert _stored_ids(project_key) == {e["event_id"] for e in events} | {uuid.UUID(native.json()["event_id"]).hex}
    assert Occurrence.objects.get(route="/multi").message == "over\nseveral\nlines"


def test_chunked_body_through_a_server_without_chunked_support_is_411(live_server, project_key):
    """Django's development server (as live_server) does not end a chunked input: refused, not misread."""
    response = requests.post(
        f"{live_server.url}/api/v1/issues", data=_chunks(orjson.dumps({"message": "x"})), timeout=10,
        headers={"Content-Type": "application/json", "X-Kaizen-Key": project_key.public_key},
    )  # fmt: skip
    assert response.status_code == 411, response.text
    assert response.json()["error"] == "length_required"
    assert not Occurrence.objects.exists()
