"""The event stream itself, against a real uvicorn process with real Redis: the events of a stage
move arrive at once, resume exactly with Last-Event-ID, reach every tab, heartbeats keep it open,
it ends by itself, and only the session's own, current token opens it."""

import time
from datetime import datetime
from unittest import mock
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from flags.evaluate import propagation_seconds
from healing.loop.stages import issue_move
from healing.models import Issue, SessionEvent, Stage
from healing.stream import fanout
from healing.stream.hub import CLIENT_NAME
from healing.stream.tokens import token_issue
from tests.factories import IssueFactory, ProjectKeyFactory
from tests.healing.stream.conftest import reported, session_new
from tests.healing.stream.live import SSE, stream_server

ORIGIN = "https://app.example.com"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def stream(django_db_setup, tmp_path_factory):
    with stream_server(var_dir=tmp_path_factory.mktemp("stream"), redis_url=settings.REDIS_URL,
                       KAIZEN_STREAM_HEARTBEAT_SECONDS="1", KAIZEN_STREAM_MAX_SECONDS="8") as base:  # fmt: skip
        yield base


@pytest.fixture
def user(transactional_db):
    project = ProjectKeyFactory().project
    issue = IssueFactory(project=project, type="SILENT_FAILURE", stage=Stage.DETECTED)
    session = session_new(project=project, name="Ada")
    reported(session=session, issue=issue)
    token = token_issue(project_id=project.pk, session_id=session.session_id)
    return {"project": project, "issue": issue, "session": session, "token": token}


def url(base: str, user: dict, *, token: str | None = None, **query) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"{base}/api/v1/sessions/{user['session'].session_id}/events?token={token or user['token']}{extra}"


def move(user: dict, to: str, **kwargs) -> None:
    issue = user["issue"]
    assert issue_move(issue=issue, expected=issue.stage, to=to, **kwargs)


def test_a_stage_move_arrives_at_once_with_its_status(stream, user):
    sse = SSE(url(stream, user), headers={"Origin": ORIGIN})
    assert sse.status == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
    assert sse.headers["Access-Control-Allow-Origin"] == ORIGIN and sse.headers["Cache-Control"].startswith("no-cache")
    assert sse.block() == ["retry: 2000"]  # first, so the browser reconnects after 2 s
    move(user, Stage.DIAGNOSING)
    (event,) = sse.events(1)
    stored = SessionEvent.objects.get(session=user["session"])
    assert (event["id"], event["event"], event["data"]) == (stored.pk, "status", stored.payload)
    assert event["data"]["stage"] == "diagnosing" and event["data"]["step"] == 2
    sse.close()


def test_a_reconnecting_browser_gets_exactly_what_it_missed(stream, user):
    sse = SSE(url(stream, user))
    move(user, Stage.DIAGNOSING)
    (first,) = sse.events(1)
    sse.close()
    move(user, Stage.ROOT_CAUSE_FOUND, message="We found it: a busy upstream.")  # while disconnected
    move(user, Stage.FIXING)
    fanout.session_message(session=user["session"], text="Hang on, Ada.")
    missed = list(SessionEvent.objects.filter(id__gt=first["id"]).order_by("id").values_list("id", flat=True))

    resumed = SSE(url(stream, user), headers={"Last-Event-ID": str(first["id"])})
    got = resumed.events(3)
    assert [e["id"] for e in got] == missed
    assert [e["event"] for e in got] == ["status", "status", "message"]
    assert got[0]["data"]["message"] == "We found it: a busy upstream."
    # And it goes on live after the backlog.
    move(user, Stage.VERIFYING)
    (verifying,) = resumed.events(1)
    assert verifying["data"]["stage"] == "verifying"
    resumed.close()

    by_query = SSE(url(stream, user, last_event_id=verifying["id"]))
    move(user, Stage.DEPLOYED)
    (fixed,) = by_query.events(1)
    assert fixed["data"]["stage"] == "deployed" and fixed["data"]["final"] is True
    by_query.close()


def verified(user: dict) -> None:
    """The issue waits at `verifying`, told to no one yet: the next move may be to deployed."""
    Issue.objects.filter(pk=user["issue"].pk).update(stage=Stage.VERIFYING)
    user["issue"].stage = Stage.VERIFYING


def test_fixed_waits_until_the_fix_has_reached_every_process(stream, user):
    """A "Fixed" rests on the flag turned on with it, and each web process sees a flag change within
    flags.evaluate.propagation_seconds(): the stream holds that status, and what follows it, until
    then, so a "Try again" clicked the moment it shows runs with the fix."""
    verified(user)
    sse = SSE(url(stream, user))
    assert sse.block() == ["retry: 2000"]
    move(user, Stage.DEPLOYED)
    fanout.session_message(session=user["session"], text="Try again, Ada.")
    fixed, message = sse.events(2)
    arrived = time.time()
    assert (fixed["data"]["stage"], message["event"]) == ("deployed", "message")  # order kept
    at = datetime.fromisoformat(fixed["data"]["at"]).timestamp()
    assert arrived >= fanout.status_send_after(kind="status", payload=fixed["data"]) >= at + propagation_seconds()
    sse.close()


def test_fixed_read_from_the_database_waits_too(stream, user):
    """A tab opened (or reconnecting) at that moment reads the status from the database."""
    verified(user)
    move(user, Stage.DEPLOYED)
    (fixed,) = SSE(url(stream, user)).events(1)
    assert fixed["data"]["stage"] == "deployed"
    assert time.time() >= fanout.status_send_after(kind="status", payload=fixed["data"]) > 0


def test_only_a_status_resting_on_a_flag_is_held():
    at = "2026-11-30T10:00:00+00:00"
    held = fanout.status_send_after(kind="status", payload={"stage": "deployed", "at": at})
    assert held >= datetime.fromisoformat(at).timestamp() + propagation_seconds()
    for kind, payload in [("status", {"stage": "diagnosing", "at": at}), ("status", {"stage": "mitigated", "at": at}),
                          ("message", {"stage": "deployed", "at": at}), ("status", {"stage": "deployed"}),
                          ("status", {"stage": "deployed", "at": "yesterday"}), ("status", ["deployed"])]:  # fmt: skip
        assert fanout.status_send_after(kind=kind, payload=payload) == 0.0


def hub_connections() -> int:
    return sum(c.get("name") == CLIENT_NAME for c in redis.Redis.from_url(settings.REDIS_URL).client_list())


def test_every_tab_gets_every_event_through_one_redis_subscriber(stream, user):
    first = SSE(url(stream, user))
    assert first.block() == ["retry: 2000"]
    hubs = hub_connections()  # the stream process's, and any other's on this machine
    tabs = [first, *(SSE(url(stream, user)) for _ in range(4))]
    move(user, Stage.DIAGNOSING)
    fanout.session_command(session=user["session"], type="refresh_token")
    received = [tab.events(2) for tab in tabs]
    assert all(r == received[0] for r in received)
    assert [e["event"] for e in received[0]] == ["status", "command"]
    assert hub_connections() == hubs  # one pub/sub connection for the process, not one per stream
    for tab in tabs:
        tab.close()


def test_heartbeats_keep_an_idle_stream_open_and_it_ends_by_itself(stream, user):
    sse = SSE(url(stream, user))
    started = time.monotonic()
    blocks = []
    while (block := sse.block()) is not None:
        blocks.append(block)
    assert blocks[0] == ["retry: 2000"]
    assert blocks[1:] and all(b == [": keep-alive"] for b in blocks[1:])  # nothing happened: only comments
    assert time.monotonic() - started < 20  # ended by KAIZEN_STREAM_MAX_SECONDS, for the browser to reconnect


def test_tokens_are_checked(stream, user):
    other = session_new(project=user["project"])
    cases = {
        "garbage": ("nonsense", 401, "invalid_token"),
        "other session": (
            token_issue(project_id=user["project"].pk, session_id=other.session_id),
            403,
            "wrong_session",
        ),  # fmt: skip
    }
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):
        cases["expired"] = (token_issue(project_id=user["project"].pk, session_id=user["session"].session_id), 401,
                            "token_expired")  # fmt: skip
    for name, (token, status, error) in cases.items():
        sse = SSE(url(stream, user, token=token), headers={"Origin": ORIGIN})
        body = sse.response.json()
        assert (sse.status, body["error"]) == (status, error), name
        assert sse.headers["Access-Control-Allow-Origin"] == ORIGIN  # the page may read why
    missing = SSE(f"{stream}/api/v1/sessions/{user['session'].session_id}/events")
    assert (missing.status, missing.response.json()["error"]) == (401, "missing_token")


def test_an_origin_the_project_does_not_allow_is_refused(stream, user):
    sse = SSE(url(stream, user), headers={"Origin": "https://evil.example.net"})
    assert (sse.status, sse.response.json()["error"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in sse.headers


def test_without_redis_the_stream_polls_the_database(user, tmp_path):
    with stream_server(var_dir=tmp_path / "var", redis_url="", KAIZEN_STREAM_POLL_SECONDS="0.2") as base:
        sse = SSE(url(base, user))
        assert sse.block() == ["retry: 2000"]
        move(user, Stage.DIAGNOSING)
        fanout.session_message(session=user["session"], text="Hello")
        assert [e["event"] for e in sse.events(2)] == ["status", "message"]
        sse.close()


def test_open_streams_share_a_few_database_connections(stream, user):
    """Not one per stream: the stream process reads on KAIZEN_STREAM_DB_THREADS threads."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts the stream process's connections to a database server (PostgreSQL)")

    tabs = [SSE(url(stream, user)) for _ in range(12)]
    for tab in tabs:
        assert tab.block() == ["retry: 2000"]
    move(user, Stage.DIAGNOSING)
    for tab in tabs:
        assert tab.events(1)[0]["data"]["stage"] == "diagnosing"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [f"kaizen-stream-{urlsplit(stream).port}"],
        )
        others = cursor.fetchone()[0]
    assert 1 <= others <= settings.KAIZEN_STREAM_DB_THREADS
    for tab in tabs:
        tab.close()
