"""The size caps as shipped, not as a test sets them: one byte over is a 413 JSON error and
nothing is written, exactly at the cap is accepted and stored once.

The sizes here are literals on purpose. A test that read them back from settings would follow a
default raised by mistake; these fail instead.
"""

import base64
import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from healing.models import Occurrence

MIB = 1024 * 1024
SHIPPED = {
    "KAIZEN_MAX_BODY_BYTES": MIB,  # a native report
    "KAIZEN_MAX_EVENT_BYTES": MIB,  # a Sentry event: the store body, or an event item of an envelope
    "KAIZEN_MAX_ENVELOPE_BYTES": 20 * MIB,  # a whole envelope, decompressed
}
RECORDING_CAP = 256 * 1024  # characters of base64 in a report's `recording`


def test_settings_ship_these_caps():
    """Read in a fresh interpreter with none of the variables set, whatever this shell exports."""
    env = {name: value for name, value in os.environ.items() if name not in SHIPPED}
    env["SECRET_KEY"] = "shipped-defaults"
    code = "import json; from kaizen_site import settings as s; print(json.dumps({n: getattr(s, n) for n in %r}))"
    out = subprocess.run(
        [sys.executable, "-c", code % sorted(SHIPPED)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == SHIPPED


@pytest.fixture(autouse=True)
def shipped_caps():
    overridden = sorted(name for name in SHIPPED if name in os.environ)
    if overridden:
        pytest.skip(f"{', '.join(overridden)} set in the environment: these tests are about the shipped defaults")
    assert {name: getattr(settings, name) for name in SHIPPED} == SHIPPED


def padded(template: dict, size: int, *, pad: tuple[str, ...]) -> bytes:
    """`template` as JSON of exactly `size` bytes, grown by a string at the path `pad`."""
    holder = target = json.loads(json.dumps(template))
    for part in pad[:-1]:
        target = target.setdefault(part, {})
    target[pad[-1]] = ""
    fill = size - len(orjson.dumps(holder))
    assert fill >= 0
    target[pad[-1]] = "y" * fill
    body = orjson.dumps(holder)
    assert len(body) == size
    return body


def assert_too_large(response) -> None:
    assert response.status_code == 413, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "too_large"


NOTHING = {"queued": 0, "occurrences": 0, "issues": 0}
ONE = {"occurrences": 1, "issues": 1}


# --- Native reports -------------------------------------------------------------------------


def native(client, project_key, body: bytes, **extra):
    return client.post(
        "/api/v1/issues",
        data=body,
        content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key,
        **extra,
    )


REPORT = {"message": "Export failed", "type": "ERROR"}


def test_native_report_one_byte_over_a_mib_is_413_and_nothing_is_written(client, project_key, ingest_written):
    assert_too_large(native(client, project_key, padded(REPORT, MIB + 1, pad=("state", "pad"))))
    assert ingest_written() == NOTHING


def test_native_report_of_exactly_a_mib_is_stored(client, project_key, ingest_written):
    response = native(client, project_key, padded(REPORT, MIB, pad=("state", "pad")))
    assert response.status_code == 202, response.content[:300]
    written = ingest_written()
    assert {k: written[k] for k in ONE} == ONE
    assert len(Occurrence.objects.get().payload["state"]["pad"]) > MIB - 100


def test_native_cap_applies_to_the_decompressed_body(client, project_key, ingest_written):
    over = gzip.compress(padded(REPORT, MIB + 1, pad=("state", "pad")))
    assert len(over) < MIB // 100  # tiny on the wire
    assert_too_large(native(client, project_key, over, HTTP_CONTENT_ENCODING="gzip"))
    assert ingest_written() == NOTHING
    at_cap = gzip.compress(padded(REPORT, MIB, pad=("state", "pad")))
    assert native(client, project_key, at_cap, HTTP_CONTENT_ENCODING="gzip").status_code == 202
    assert ingest_written()["occurrences"] == 1


def recording_of(length: int) -> str:
    """Base64 of a gzip stream (zero-padded, which gzip readers allow), exactly `length` characters."""
    raw_length = length // 4 * 3
    payload = gzip.compress(b"r" * (raw_length - 200), compresslevel=0, mtime=0)
    assert gzip.decompress(payload + b"\0" * (raw_length - len(payload))) == b"r" * (raw_length - 200)
    text = base64.b64encode(payload + b"\0" * (raw_length - len(payload))).decode()
    assert len(text) == length
    return text


def test_recording_cap(client, project_key, ingest_written):
    over = native(client, project_key, orjson.dumps({**REPORT, "recording": recording_of(RECORDING_CAP + 4)}))
    assert over.status_code == 400
    assert over.json()["error"] == "invalid_report"
    assert [e["field"] for e in over.json()["detail"]] == ["recording"]
    assert ingest_written() == NOTHING
    at_cap = native(client, project_key, orjson.dumps({**REPORT, "recording": recording_of(RECORDING_CAP)}))
    assert at_cap.status_code == 202, at_cap.content[:300]
    assert ingest_written()["occurrences"] == 1


# --- Sentry ---------------------------------------------------------------------------------


def sentry_post(client, project_key, endpoint: str, body: bytes, **headers):
    headers["X-Sentry-Auth"] = f"Sentry sentry_version=7, sentry_key={project_key.public_key}"
    return client.post(
        f"/api/{project_key.project_id}/{endpoint}/",
        data=body,
        content_type="application/x-sentry-envelope" if endpoint == "envelope" else "application/json",
        headers=headers,
    )


def event(**fields) -> dict:
    return {"event_id": uuid.uuid4().hex, "level": "error", "message": "Checkout failed", **fields}


def envelope_of(*items: tuple[dict, bytes]) -> bytes:
    return b"\n".join([b"{}", *(orjson.dumps(h) + b"\n" + p for h, p in items)]) + b"\n"


def test_store_event_one_byte_over_a_mib_is_413(client, project_key, ingest_written):
    assert_too_large(sentry_post(client, project_key, "store", padded(event(), MIB + 1, pad=("extra", "pad"))))
    assert ingest_written() == NOTHING


def test_store_event_of_exactly_a_mib_is_stored(client, project_key, ingest_written):
    response = sentry_post(client, project_key, "store", padded(event(), MIB, pad=("extra", "pad")))
    assert response.status_code == 200, response.content[:300]
    assert {k: v for k, v in ingest_written().items() if k in ONE} == ONE


def test_envelope_event_item_cap(client, project_key, ingest_written):
    over = padded(event(), MIB + 1, pad=("extra", "pad"))
    assert_too_large(sentry_post(client, project_key, "envelope", envelope_of(({"type": "event"}, over))))
    assert ingest_written() == NOTHING
    at_cap = padded(event(), MIB, pad=("extra", "pad"))
    response = sentry_post(client, project_key, "envelope", envelope_of(({"type": "event"}, at_cap)))
    assert response.status_code == 200, response.content[:300]
    assert ingest_written()["occurrences"] == 1


def envelope_sized(size: int) -> bytes:
    """An error event plus an attachment that brings the whole envelope to exactly `size` bytes."""
    item = orjson.dumps(event())
    head = envelope_of(({"type": "event"}, item))
    attachment_header = orjson.dumps({"type": "attachment", "length": 0, "filename": "dump.bin"})
    fill = size - len(head) - len(attachment_header) - 2  # two newlines: after the header, after the data
    for _ in range(3):  # the length's own digits change the header's size
        attachment_header = orjson.dumps({"type": "attachment", "length": fill, "filename": "dump.bin"})
        fill = size - len(head) - len(attachment_header) - 2
    body = head + attachment_header + b"\n" + b"\0" * fill + b"\n"
    assert len(body) == size
    return body


def test_envelope_one_byte_over_twenty_mib_is_413_even_compressed(client, project_key, ingest_written):
    body = envelope_sized(20 * MIB + 1)
    assert_too_large(sentry_post(client, project_key, "envelope", body))
    assert_too_large(sentry_post(client, project_key, "envelope", gzip.compress(body), **{"Content-Encoding": "gzip"}))
    assert ingest_written() == NOTHING


def test_envelope_of_exactly_twenty_mib_is_accepted(client, project_key, ingest_written):
    response = sentry_post(client, project_key, "envelope", envelope_sized(20 * MIB))
    assert response.status_code == 200, response.content[:300]
    assert ingest_written()["occurrences"] == 1  # the event; the attachment is not stored
