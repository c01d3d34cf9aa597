"""The session API the detector calls: sessions and tokens, answers, recordings, command outcomes."""

import time
from unittest import mock

import orjson
import pytest

from healing.models import AuditEntry, EnqueueState, Issue, IssueEvent, SessionRecording, Stage, UserSession
from healing.stream.tokens import token_check, token_issue
from tests.factories import IssueFactory

ORIGIN = "https://app.example.com"  # the factories' project allows it


@pytest.fixture
def call(client, project_key):
    def post(path: str, body, *, key: str | None = None, content_type: str = "text/plain", **extra):
        data = body if isinstance(body, bytes | str) else orjson.dumps(body)
        return client.post(f"/api/v1/sessions{path}?key={key or project_key.public_key}", data=data,
                           content_type=content_type, HTTP_ORIGIN=ORIGIN, **extra)  # fmt: skip

    return post


def old_token(session: UserSession, *, age: float) -> str:
    with mock.patch("django.core.signing.time.time", return_value=time.time() - age):
        return token_issue(project_id=session.project_id, session_id=session.session_id)


def test_a_session_is_minted_by_the_server_with_a_token_and_its_stream_url(call, project, settings):
    answer = call("", {"user": {"id": "42", "name": "Ada Lovelace", "email": "ada@example.com"}},
                  HTTP_USER_AGENT="Mozilla/5.0 test")  # fmt: skip
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"session_id", "token", "expires_in", "stream_url"}
    assert len(body["session_id"]) >= 32 and body["expires_in"] == settings.KAIZEN_SESSION_TOKEN_SECONDS
    assert body["stream_url"] == f"{settings.KAIZEN_STREAM_URL}/api/v1/sessions/{body['session_id']}/events"
    assert token_check(token=body["token"], session_id=body["session_id"]) == project.pk
    session = UserSession.objects.get(session_id=body["session_id"])
    assert (session.project, session.user_id, session.user_name, session.user_email, session.user_agent) == (
        project, "42", "Ada Lovelace", "ada@example.com", "Mozilla/5.0 test")  # fmt: skip
    assert answer["Access-Control-Allow-Origin"] == ORIGIN
    assert call("", {}).status_code == 201  # an anonymous user too
    assert call("", b"", content_type="application/json").status_code == 201


def test_a_page_cannot_choose_its_session_id(call):
    answer = call("", {"session_id": "mine", "user": {"id": "1"}})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_body"
    assert not UserSession.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "text/plain", 400, "invalid_json"),
        (b"[1, 2]", "text/plain", 400, "invalid_body"),
        ({"user": {"name": "x" * 201}}, "text/plain", 400, "invalid_body"),
        (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(call, body, content_type, status, error):
    answer = call("", body, content_type=content_type)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert not UserSession.objects.exists()


def test_keys_and_origins_are_checked_as_for_ingest(call, client):
    assert call("", {}, key="0" * 32).status_code == 401
    answer = client.post("/api/v1/sessions", data=b"{}", content_type="text/plain")
    assert answer.status_code == 401
    assert not UserSession.objects.exists()


def test_refresh_gives_a_fresh_token_and_attaches_the_user(call, user_session):
    stale = old_token(user_session, age=3600)  # expired an hour ago: within the grace
    answer = call(f"/{user_session.session_id}/token", {"token": stale, "user": {"id": "7", "name": "Grace"}})
    assert answer.status_code == 200
    assert token_check(token=answer.json()["token"], session_id=user_session.session_id) == user_session.project_id
    user_session.refresh_from_db()
    assert (user_session.user_id, user_session.user_name) == ("7", "Grace")


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [
        (lambda s, other: old_token(s, age=2 * 24 * 3600), 401, "token_expired"),
        (lambda s, other: "forged" + old_token(s, age=0), 401, "invalid_token"),
        (lambda s, other: token_issue(project_id=s.project_id, session_id=other.session_id), 403, "wrong_session"),
    ],
)
def test_refresh_refuses_old_forged_and_other_sessions_tokens(call, project, user_session, token, status, error):
    other = UserSession.objects.create(project=project, session_id="x" * 32)
    answer = call(f"/{user_session.session_id}/token", {"token": token(user_session, other)})
    assert (answer.status_code, answer.json()["error"]) == (status, error)


def test_a_token_of_another_project_is_refused(call, user_session, project):
    from tests.factories import ProjectKeyFactory

    other_key = ProjectKeyFactory()
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    answer = call(f"/{user_session.session_id}/token", {"token": token}, key=other_key.public_key)
    assert (answer.status_code, answer.json()["error"]) == (403, "wrong_session")


def test_the_users_answer_is_recorded_and_the_issue_diagnosed_again(
    call, issue, user_session, broker, django_capture_on_commit_callbacks
):
    Issue.objects.filter(pk=issue.pk).update(stage=Stage.NEEDS_INPUT)
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    with django_capture_on_commit_callbacks(execute=True):
        answer = call(f"/{user_session.session_id}/reply",
                      {"token": token, "issue_id": str(issue.pk), "text": "I clicked Generate twice"})  # fmt: skip
    assert answer.status_code == 202
    issue.refresh_from_db()
    assert issue.stage == Stage.DETECTED and issue.enqueue_state == EnqueueState.SENT
    event = IssueEvent.objects.get(issue=issue)
    assert (event.stage, event.detail) == (Stage.DETECTED, "The user answered: I clicked Generate twice")
    assert broker.llen(issue.severity) == 1  # process_issue on the issue's queue
    assert AuditEntry.objects.filter(action="issue.move", actor=f"session:{user_session.session_id[:12]}").exists()


def test_an_answer_after_the_issue_moved_on_is_still_kept(call, issue, user_session):
    Issue.objects.filter(pk=issue.pk).update(stage=Stage.FIXING)
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    answer = call(f"/{user_session.session_id}/reply", {"token": token, "issue_id": str(issue.pk), "text": "Twice"})
    assert answer.status_code == 202
    issue.refresh_from_db()
    assert issue.stage == Stage.FIXING
    assert IssueEvent.objects.get(issue=issue).detail == "The user answered: Twice"


def test_a_session_answers_only_for_issues_it_reported(call, project, user_session):
    elsewhere = IssueFactory(project=project, stage=Stage.NEEDS_INPUT)
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    answer = call(f"/{user_session.session_id}/reply", {"token": token, "issue_id": str(elsewhere.pk), "text": "hi"})
    assert (answer.status_code, answer.json()["error"]) == (403, "not_your_issue")
    elsewhere.refresh_from_db()
    assert elsewhere.stage == Stage.NEEDS_INPUT and not IssueEvent.objects.exists()


def test_a_recording_is_kept_and_one_over_the_cap_is_refused(call, settings, issue, user_session):
    settings.KAIZEN_MAX_RECORDING_BYTES = 4096
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    events = [{"type": 4, "data": {"href": "https://app.example.com/"}, "timestamp": 1}, {"type": 2, "data": {}}]
    path = f"/{user_session.session_id}/recording"
    answer = call(path, {"token": token, "issue_id": str(issue.pk), "events": events})
    assert answer.status_code == 202
    recording = SessionRecording.objects.get()
    assert (recording.session, recording.issue, recording.events, recording.event_count) == (
        user_session, issue, events, 2)  # fmt: skip
    big = [{"type": 3, "data": {"text": "x" * 1000}}] * 5
    answer = call(path, {"token": token, "issue_id": str(issue.pk), "events": big})
    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")
    assert SessionRecording.objects.count() == 1


def test_a_command_outcome_is_logged_for_the_owner(call, user_session):
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    answer = call(f"/{user_session.session_id}/commands", {"token": token, "command": {"type": "eval", "payload": {}},
                                                            "outcome": "ignored", "reason": "unknown command"})  # fmt: skip
    assert answer.status_code == 202
    entry = AuditEntry.objects.get(action="session.command_ignored")
    assert entry.detail == {"command": {"type": "eval", "payload": {}}, "reason": "unknown command"}
    bad = call(f"/{user_session.session_id}/commands", {"token": token, "command": {}, "outcome": "exploded"})
    assert bad.status_code == 400


def test_under_the_api_server_the_stream_path_points_to_the_stream_server(client, user_session, settings):
    token = token_issue(project_id=user_session.project_id, session_id=user_session.session_id)
    answer = client.get(f"/api/v1/sessions/{user_session.session_id}/events?token={token}")
    assert answer.status_code == 421
    body = answer.json()
    assert body["error"] == "use_stream_url"
    assert body["stream_url"] == f"{settings.KAIZEN_STREAM_URL}/api/v1/sessions/{user_session.session_id}/events"


def test_the_session_endpoints_are_in_the_api_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    for path in ("/api/v1/sessions", "/api/v1/sessions/{session_id}/token", "/api/v1/sessions/{session_id}/reply",
                 "/api/v1/sessions/{session_id}/recording", "/api/v1/sessions/{session_id}/commands"):  # fmt: skip
        assert "post" in schema["paths"][path], path
