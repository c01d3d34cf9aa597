"""Client timestamps: whatever a client claims, every report is stored, and the time stored is
one Python and the database can hold (Sentry's window: 30 days back, a minute ahead)."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from healing.ingest import store
from healing.models import Occurrence
from tests.factories import IssueFactory

# Each was answered 202 and then failed the consumer's batch, or was stored as another year.
OUT_OF_RANGE = [
    ("0001-01-01T00:00:00+01:00", "invalid_timestamp"),  # year 0 once in UTC
    ("0001-01-01T00:00:00Z", "past_timestamp"),
    ("0099-03-01T10:00:00Z", "past_timestamp"),
    ("0009-06-01T00:00:00Z", "past_timestamp"),
    ("9999-12-31T23:59:59-01:00", "invalid_timestamp"),  # year 10000 once in UTC
    ("9999-12-31T23:59:59Z", "future_timestamp"),
]


def _sentry_post(client, project_key, *, endpoint: str, event: dict):
    if endpoint == "envelope":
        body = b"\n".join([orjson.dumps({"event_id": event["event_id"]}), orjson.dumps({"type": "event"}),
                           orjson.dumps(event)])  # fmt: skip
    else:
        body = orjson.dumps(event)
    return client.post(
        f"/api/{project_key.project_id}/{endpoint}/",
        data=body,
        content_type="application/json",
        headers={"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={project_key.public_key}"},
    )


def _assert_clamped(occurrence: Occurrence, *, sent: str, kind: str, before: float, after: float) -> None:
    assert before - 1 <= occurrence.timestamp.timestamp() <= after + 1  # the received time
    assert occurrence.payload["processing"] == [{"type": kind, "name": "timestamp", "value": sent}]
    assert datetime.fromisoformat(occurrence.payload["timestamp"]) == occurrence.timestamp


@pytest.mark.parametrize(("sent", "kind"), OUT_OF_RANGE)
def test_native_report_outside_the_window_is_stored_at_the_received_time(post_report, drain, sent, kind):
    before = time.time()
    response = post_report({"message": "x", "timestamp": sent})
    assert response.status_code == 202, response.content
    drain()
    occurrence = Occurrence.objects.get(event_id=response.json()["event_id"])
    _assert_clamped(occurrence, sent=sent, kind=kind, before=before, after=time.time())


@pytest.mark.parametrize("endpoint", ["store", "envelope"])
@pytest.mark.parametrize(("sent", "kind"), OUT_OF_RANGE[:1] + OUT_OF_RANGE[2:4] + OUT_OF_RANGE[5:])
def test_sentry_event_outside_the_window_is_stored_at_the_received_time(client, project_key, drain, endpoint, sent,
                                                                        kind):  # fmt: skip
    before = time.time()
    event = {"event_id": uuid.uuid4().hex, "message": "x", "timestamp": sent}
    response = _sentry_post(client, project_key, endpoint=endpoint, event=event)
    assert response.status_code == 200, response.content
    drain()
    occurrence = Occurrence.objects.get(event_id=event["event_id"])
    _assert_clamped(occurrence, sent=sent, kind=kind, before=before, after=time.time())


def test_sentry_epoch_far_in_the_future_is_clamped(client, project_key, drain):
    event = {"event_id": uuid.uuid4().hex, "message": "x", "timestamp": 253402300799.0}  # 9999-12-31
    assert _sentry_post(client, project_key, endpoint="store", event=event).status_code == 200
    drain()
    occurrence = Occurrence.objects.get(event_id=event["event_id"])
    assert occurrence.payload["processing"][0]["type"] == "future_timestamp"
    assert abs(occurrence.timestamp.timestamp() - time.time()) < 60


@pytest.mark.parametrize(
    ("offset", "kept"),
    [(timedelta(days=-29), True), (timedelta(seconds=30), True), (timedelta(days=-31), False),
     (timedelta(minutes=5), False)],
)  # fmt: skip
def test_the_window_keeps_plausible_client_times(post_report, drain, offset, kept):
    sent = (datetime.now(UTC) + offset).replace(microsecond=0)
    response = post_report({"message": "x", "timestamp": sent.isoformat()})
    drain()
    occurrence = Occurrence.objects.get(event_id=response.json()["event_id"])
    assert (occurrence.timestamp == sent) is kept
    assert ("processing" in occurrence.payload) is not kept


def test_a_time_without_zone_is_utc(post_report, drain):
    sent = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(hours=1)
    response = post_report({"message": "x", "timestamp": sent.isoformat()})
    drain()
    assert Occurrence.objects.get(event_id=response.json()["event_id"]).timestamp == sent.replace(tzinfo=UTC)


@pytest.mark.parametrize("year", [1, 9, 99, 999, 9999])
def test_the_store_writes_four_digit_years(db, year):
    """Below the edge, for entries accepted before it settled timestamps: the year is the year."""
    issue = IssueFactory()
    when = datetime(year, 6, 1, 12, 30, tzinfo=UTC)
    record = {
        "event_id": str(uuid.uuid4()), "project_id": issue.project_id, "issue_id": str(issue.id),
        "fingerprint": issue.fingerprint, "grouping": issue.grouping, "source": "native",
        "received_at": time.time(), "report": {"message": "x", "timestamp": when.isoformat()},
    }  # fmt: skip
    result = store.reports_store(records=[record])
    assert result.stored == 1
    assert Occurrence.objects.get(event_id=record["event_id"]).timestamp == when


def test_the_store_keeps_a_report_whose_time_cannot_be_held(db):
    issue = IssueFactory()
    record = {
        "event_id": str(uuid.uuid4()), "project_id": issue.project_id, "issue_id": str(issue.id),
        "fingerprint": issue.fingerprint, "grouping": issue.grouping, "source": "native",
        "received_at": time.time(), "report": {"message": "x", "timestamp": "0001-01-01T00:00:00+01:00"},
    }  # fmt: skip
    assert store.reports_store(records=[record]).stored == 1
    occurrence = Occurrence.objects.get(event_id=record["event_id"])
    assert occurrence.timestamp is None
    assert occurrence.payload["timestamp"] == "0001-01-01T00:00:00+01:00"
