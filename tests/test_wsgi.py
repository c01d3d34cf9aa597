"""The WSGI application: reports and flag reads through the lean handler, everything else through
the whole middleware stack, with the same answers a client can see."""

import gc
import io
import sys

import orjson
import pytest
from django.conf import settings

from flags import evaluate, services
from kaizen_site import wsgi
from tests.factories import ProjectKeyFactory

ORIGIN = "https://app.example.com"


def _call(
    path: str, *, method: str = "GET", body: bytes = b"", query: str = "", **headers: str
) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "testserver",
        "SERVER_PORT": "80", "HTTP_HOST": "testserver", "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }  # fmt: skip
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, {k.lower(): v for k, v in response_headers}

    response = wsgi.application(environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return answer["status"], answer["headers"], content


@pytest.mark.parametrize(
    ("path", "lean"),
    [("/api/v1/issues", True), ("/api/12/envelope/", True), ("/api/12/store/", True), ("/api/v1/flags", True),
     ("/api/v1/flags/evaluate", True), ("/api/v1/issues/extra", False), ("/api/v1/sessions", False),
     ("/api/v1/flags/new-checkout", False), ("/api/v1/flags/new-checkout/kill", False), ("/admin/login/", False),
     ("/healthz", False)],
)  # fmt: skip
def test_only_the_report_paths_and_the_flag_reads_take_a_lean_handler(path, lean):
    # The flag owner's API (a flag's own path) may be called from a console session: whole stack.
    matched = [paths for paths in (wsgi.REPORT_PATHS, wsgi.FLAG_READ_PATHS) if paths.fullmatch(path)]
    assert len(matched) == int(lean)


def test_building_the_lean_handler_leaves_the_setting_alone():
    assert "django.contrib.sessions.middleware.SessionMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db(transaction=True)
def test_a_browser_report_is_answered_with_cors_and_security_headers_and_no_cookie():
    key = ProjectKeyFactory(project__allowed_origins=[ORIGIN])
    status, headers, content = _call(
        "/api/v1/issues", method="POST", body=orjson.dumps({"message": "Generate did nothing"}),
        X_KAIZEN_KEY=key.public_key, ORIGIN=ORIGIN,
    )  # fmt: skip
    assert status.startswith("202"), content
    assert orjson.loads(content)["issue_id"]
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in headers


@pytest.mark.django_db(transaction=True)
def test_a_browser_reads_its_flags_with_cors_security_headers_an_etag_and_no_cookie():
    key = ProjectKeyFactory(project__allowed_origins=[ORIGIN])
    services.flag_create(project=key.project, key="new-checkout", actor="alice", enabled=True, rollout_percentage=100)
    evaluate.snapshot_forget()
    status, headers, content = _call(
        "/api/v1/flags", query=f"user=42&key={key.public_key}", ORIGIN=ORIGIN, ACCEPT="text/html"
    )
    assert status.startswith("200"), content
    assert orjson.loads(content)["flags"] == {"new-checkout": True}
    assert headers["content-type"] == "application/json"  # whatever the Accept header asked
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["etag"] and "set-cookie" not in headers
    assert headers["content-length"] == str(len(content))  # not chunked, as before
    status, _, content = _call("/api/v1/flags", query=f"user=42&key={key.public_key}", IF_NONE_MATCH=headers["etag"])
    assert status.startswith("304") and content == b""


@pytest.mark.django_db(transaction=True)
def test_the_console_keeps_the_whole_stack():
    status, headers, _ = _call("/admin/login/")
    assert status.startswith("200")
    assert "csrftoken" in headers.get("set-cookie", "")  # CSRF middleware ran
    assert headers["x-frame-options"] == "DENY"


def test_the_server_process_collects_garbage_less_often_and_never_rescans_its_start_up():
    assert gc.get_threshold()[0] == wsgi.GC_GEN0_THRESHOLD
    assert gc.get_freeze_count() > 10_000  # Django, the project's modules, the URL patterns
