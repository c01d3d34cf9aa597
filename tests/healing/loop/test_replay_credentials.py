"""Credentials a report captured are never stored in clear nor replayed; a replay runs as the user
through a sandbox identity Kaizen signs; the three demo scenarios heal from the page's own reports."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import redis
from django.conf import settings as django_settings

from flags import probes
from healing.demo import product as demo
from healing.ingest.redact import REDACTED
from healing.loop import pipeline, verify
from healing.models import Change, Issue, IssueEvent, Occurrence, Project, Stage
from tests.demo_page import SCENARIOS, DemoPage, template_lines_missing

SECRETS = ("s3cr3t-bearer", "s3cr3t-cookie", "s3cr3t-set-cookie", "s3cr3t-api-key", "s3cr3t-auth-token",
           "s3cr3t-kaizen-key", "s3cr3t-query", "s3cr3t-url", "s3cr3t-password", "s3cr3t-network", "s3cr3t-custom")  # fmt: skip

CAPTURED = {
    "type": "AUTH_ISSUE",
    "message": "Session expired right after login",
    "user": {"id": "alice"},
    "url": "https://app.example.com/account?tab=me&token=s3cr3t-url",
    "network": [{"method": "GET", "url": "/demo/api/me?api_key=s3cr3t-network", "status": 401}],
    "request": {
        "method": "POST",
        "path": "/demo/api/me?password=s3cr3t-password&view=full",
        "query": {"token": "s3cr3t-query", "page": "2"},
        "headers": {
            "Authorization": "Bearer s3cr3t-bearer",
            "Cookie": "sessionid=s3cr3t-cookie",
            "Set-Cookie": "sessionid=s3cr3t-set-cookie",
            "X-Api-Key": "s3cr3t-api-key",
            "X-Auth-Token": "s3cr3t-auth-token",
            "X-Kaizen-Key": "s3cr3t-kaizen-key",
            "X-Custom-Token": "s3cr3t-custom",
            "X-Demo-User": "alice",
            "Accept-Language": "en",
        },
        "body": {"user": "alice", "password": "s3cr3t-password"},
        "status": 401,
    },
}


def secrets_in(data) -> list[str]:
    text = data if isinstance(data, str | bytes) else orjson.dumps(data)
    text = text.decode() if isinstance(text, bytes) else text
    return [s for s in SECRETS if s in text]


# --- redacted before anything is stored or streamed ---------------------------------------------


def test_a_native_report_is_redacted_before_the_stream_and_the_store(post_report, drain, settings):
    assert settings.KAIZEN_INGEST_MODE == "stream"
    assert post_report(CAPTURED).status_code == 202
    stream = redis.Redis.from_url(settings.REDIS_URL).xrange(settings.KAIZEN_INGEST_STREAM)
    assert len(stream) == 1 and secrets_in(b"".join(b"".join(fields.values()) for _, fields in stream)) == []
    drain()
    occurrence = Occurrence.objects.get()
    stored = occurrence.payload
    assert secrets_in(stored) == [] and secrets_in(occurrence.url) == [] and secrets_in(occurrence.issue.culprit) == []
    request = stored["request"]
    assert {name: request["headers"][name] for name in ("Authorization", "Cookie", "X-Api-Key", "X-Custom-Token")} == {
        "Authorization": REDACTED, "Cookie": REDACTED, "X-Api-Key": REDACTED, "X-Custom-Token": REDACTED}  # fmt: skip
    assert (request["headers"]["X-Demo-User"], request["headers"]["Accept-Language"]) == ("alice", "en")
    assert request["query"] == {"token": REDACTED, "page": "2"}
    assert request["body"] == {"user": "alice", "password": REDACTED}
    assert request["path"] == "/demo/api/me?password=%5Bredacted%5D&view=full"
    assert stored["url"] == "https://app.example.com/account?tab=me&token=%5Bredacted%5D"


def test_a_direct_mode_report_is_redacted_too(post_report, direct_mode):
    assert post_report(CAPTURED).status_code == 202
    assert secrets_in(Occurrence.objects.get().payload) == []


def test_a_sentry_event_keeps_no_credential(client, project_key, drain):
    event = {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "message": "Session expired",
        "request": {
            "url": "https://app.example.com/me?token=s3cr3t-url",
            "method": "GET",
            "headers": {"Authorization": "Bearer s3cr3t-bearer", "X-Api-Key": "s3cr3t-api-key"},
            "cookies": {"sessionid": "s3cr3t-cookie"},
        },
    }
    auth = f"Sentry sentry_version=7, sentry_key={project_key.public_key}"
    response = client.post(f"/api/{project_key.project_id}/store/", data=orjson.dumps(event),
                           content_type="application/json", HTTP_X_SENTRY_AUTH=auth)  # fmt: skip
    assert response.status_code == 200, response.content
    drain()
    stored = Occurrence.objects.get().payload
    assert secrets_in(stored) == [] and stored["url"] == "https://app.example.com/me?token=%5Bredacted%5D"


# --- what a replay sends -------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """A sandbox that records what reached it, on the wire."""

    seen: list[dict] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        Recorder.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                              "body": self.rfile.read(length)})  # fmt: skip
        payload = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.KAIZEN_SANDBOX_URL = f"http://127.0.0.1:{server.server_port}"
    settings.KAIZEN_SANDBOX_MODE, settings.KAIZEN_SANDBOX_SECRET = True, "sandbox-secret"
    yield Recorder.seen
    server.shutdown()
    server.server_close()


def test_a_replay_forwards_no_credential_and_no_hop_by_hop_header(recorder, rf, db):
    """Even from a payload stored before redaction existed, in clear."""
    captured = {**CAPTURED["request"], "headers": {
        **CAPTURED["request"]["headers"],
        "Transfer-Encoding": "chunked", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
        "Upgrade": "h2c", "TE": "trailers", "Trailer": "X-Sum", "Proxy-Authorization": "Basic eA==",
        "Proxy-Connection": "close", "Host": "evil.example", "Content-Length": "999", "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6", "X-Kaizen-Probe": "captured",
        "X-Kaizen-Sandbox-User": "captured", "X-Request-Id": "r-1"}}  # fmt: skip
    replay = verify.replay_of({**CAPTURED, "request": captured})
    probe = verify.probe_once(replay=replay, project_id=7, account="user", user_id="alice", affected="alice",
                              flag_key="session-refresh-fix")  # fmt: skip
    assert probe.status == 200
    (seen,) = recorder
    names = {name.lower() for name in seen["headers"]}
    never = {"authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token", "x-kaizen-key", "x-custom-token",
             "transfer-encoding", "x-hop", "keep-alive", "upgrade", "te", "trailer", "proxy-authorization",
             "proxy-connection", "x-forwarded-for", "x-forwarded-host", "forwarded"}  # fmt: skip
    assert names & never == set()
    assert secrets_in(json.dumps(seen["headers"])) == [] and b"s3cr3t" not in seen["body"]
    assert seen["headers"]["Host"] == django_settings.KAIZEN_SANDBOX_URL.removeprefix("http://")
    assert int(seen["headers"]["Content-Length"]) == len(seen["body"])
    assert seen["headers"].get("Connection", "").lower() in ("", "keep-alive", "close")  # the client's own
    assert (seen["headers"]["X-Demo-User"], seen["headers"]["X-Request-Id"]) == ("alice", "r-1")
    assert seen["path"] == "/demo/api/me?view=full&page=2"  # credential parameters dropped, the rest kept
    # What the sandbox gets instead: its own signed identity for this very request, and the probe.
    arrived = rf.generic("POST", "/demo/api/me", HTTP_X_KAIZEN_SANDBOX_USER=seen["headers"]["X-Kaizen-Sandbox-User"],
                         HTTP_X_KAIZEN_PROBE=seen["headers"]["X-Kaizen-Probe"])  # fmt: skip
    assert probes.sandbox_user(arrived, project_id=7) == "alice"
    assert probes.probe_forced_flags(arrived, project_id=7) == {"session-refresh-fix": "alice"}


def test_the_demo_honours_the_sandbox_identity_only_signed_and_only_in_the_sandbox(demo_on, client, settings):
    project_id = demo.demo_project_id()

    def me(**headers):
        return client.get("/demo/api/me", **headers)

    def identity(user="alice", **overrides):
        bound = {"project_id": project_id, "method": "GET", "path": "/demo/api/me", "user_id": user} | overrides
        return probes.sandbox_user_sign(**bound)

    answer = me(HTTP_X_KAIZEN_SANDBOX_USER=identity())
    assert (answer.status_code, answer.json()["error"]) == (401, "session_expired")  # the bug, as alice meets it
    fix = probes.probe_sign(project_id=project_id, method="GET", path="/demo/api/me", flag_key=demo.FLAG_SESSION_FIX,
                            user_id="alice")  # fmt: skip
    fixed = me(HTTP_X_KAIZEN_SANDBOX_USER=identity(), HTTP_X_KAIZEN_PROBE=fix)
    assert (fixed.status_code, fixed.json()) == (200, {"user": "alice"})
    assert me(HTTP_X_KAIZEN_SANDBOX_USER=identity(key="forged")).status_code == 403
    assert me(HTTP_X_KAIZEN_SANDBOX_USER=identity(project_id=project_id + 1)).status_code == 403
    assert me(HTTP_X_KAIZEN_SANDBOX_USER=identity(user="no spaces")).status_code == 401
    settings.KAIZEN_SANDBOX_MODE = False
    assert me(HTTP_X_KAIZEN_SANDBOX_USER=identity()).json()["error"] == "not_logged_in"  # production: ignored


# --- the three scenarios, from the page's own reports ----------------------------------------------


def test_the_page_still_builds_its_reports_as_the_tests_act_them_out():
    assert template_lines_missing() == []


@pytest.fixture
def page(sandbox, settings):
    """A tab on the demo page served by the live server, which is also the sandbox."""
    settings.KAIZEN_INGEST_MODE = "direct"
    project = Project.objects.get(slug="demo")
    project.allowed_origins = [*project.allowed_origins, sandbox.url]  # the page's own origin
    project.save(update_fields=["allowed_origins"])
    return DemoPage(base=sandbox.url, ingest_key=project.keys.get(is_active=True).public_key)


def heal(response) -> Issue:
    assert response is not None and response.status_code == 202, response and response.content
    issue_id = response.json()["issue_id"]
    pipeline.issue_process(issue_id=issue_id)
    return Issue.objects.get(pk=issue_id)


@pytest.mark.django_db(transaction=True)
def test_the_session_scenario_heals_from_the_pages_own_report(page):
    sent = page.log_in("alice")
    assert page.me().status_code == 401
    issue = heal(sent)
    stored = Occurrence.objects.get(issue=issue).payload["request"]
    assert stored["headers"] == {"X-Demo-User": "alice"}  # all the page sends: no token to replay
    change = Change.objects.get(issue=issue)
    verification = change.scorecard["verification"]
    assert verification["summary"] == "10/10 replays passed", verification
    as_user = [p for p in verification["probes"] if p["account"] == "user"]
    generic = [p for p in verification["probes"] if p["account"] == "generic"]
    assert all(p["status"] == 200 and '"user": "alice"' in p["excerpt"] for p in as_user)
    assert all(p["status"] == 200 and f'"user": "{verify.GENERIC_ACCOUNT}"' in p["excerpt"] for p in generic)
    assert issue.stage == Stage.DEPLOYED
    assert page.sees_the_fix("session")  # fixed for alice, with the token her browser holds


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "session"])
def test_the_other_scenarios_heal_from_the_pages_own_reports(page, scenario):
    heal(page.log_in("alice"))  # logging in meets the session bug first, as on the page
    issue = heal(page.run_into(scenario))
    change = Change.objects.get(issue=issue)
    assert change.scorecard["verification"]["summary"] == "10/10 replays passed"
    # Generate's fix is a flag the rollout carries to everyone; the credits resync is per user (mitigated).
    fixed = {"generate": Stage.DEPLOYED, "credits": Stage.MITIGATED}[scenario]
    assert IssueEvent.objects.filter(issue=issue, stage=fixed).exists()
    assert page.sees_the_fix(scenario)


def test_the_generic_replay_renames_only_headers_that_are_the_users_name(recorder, db):
    captured = {"method": "GET", "path": "/demo/api/credits", "status": 200,
                "headers": {"X-Demo-User": "a", "Accept-Language": "fr-CA", "X-Plan": "a"}}  # fmt: skip
    replay = verify.replay_of({"message": "x", "user": {"id": "a"}, "request": captured})
    verify.probe_once(replay=replay, project_id=7, account="generic", user_id=verify.GENERIC_ACCOUNT, affected="a",
                      flag_key=None)  # fmt: skip
    (seen,) = recorder
    assert seen["headers"]["X-Demo-User"] == verify.GENERIC_ACCOUNT
    assert seen["headers"]["Accept-Language"] == "fr-CA"  # not "fr-CkA..." with every "a" replaced
    assert "X-Kaizen-Probe" not in seen["headers"] and "X-Kaizen-Sandbox-User" in seen["headers"]
