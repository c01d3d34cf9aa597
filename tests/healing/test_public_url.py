"""One address, KAIZEN_PUBLIC_URL: what `kaizen_demo` prints, the demo project's allowed origins
(so the demo page's own reports are accepted) and the default sandbox verification replays against."""

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from healing.models import AuditEntry, Occurrence, Project, RemediationHook
from kaizen_site import checks, runtime
from tests.healing.conftest import demo_enable

BASE_DIR = Path(django_settings.BASE_DIR)
PUBLIC = "http://127.0.0.1:9123"


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:9123/", "http://127.0.0.1:9123"),
        ("https://kaizen.example.com", "https://kaizen.example.com"),
        ("  http://localhost:8000  ", "http://localhost:8000"),
    ],
)
def test_the_public_url_is_normalised(raw, url):
    assert runtime.public_url(raw) == url


@pytest.mark.parametrize(
    "raw", ["127.0.0.1:8000", "ftp://127.0.0.1", "http://", "http://127.0.0.1:99999", "http://h:x", "http://h/?a=1"]
)
def test_a_public_url_no_browser_could_open_fails_at_start_up(raw):
    with pytest.raises(RuntimeError, match="KAIZEN_PUBLIC_URL"):
        runtime.public_url(raw)


@pytest.mark.parametrize(
    ("url", "port", "origins"),
    [
        ("http://127.0.0.1:8000", 8000, ["http://127.0.0.1:8000", "http://localhost:8000"]),
        ("http://localhost:9123", 9123, ["http://localhost:9123", "http://127.0.0.1:9123"]),
        ("https://kaizen.example.com/ops", 443, ["https://kaizen.example.com"]),
        ("http://kaizen.internal", 80, ["http://kaizen.internal"]),
    ],
)
def test_port_and_origins(url, port, origins):
    assert runtime.public_port(url) == port
    assert runtime.public_origins(url) == origins


def _settings_in_a_process(**env: str) -> dict:
    """Settings as a process started by honcho sees them: honcho hands each its own PORT."""
    code = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps({'public': s.KAIZEN_PUBLIC_URL, 'sandbox': s.KAIZEN_SANDBOX_URL}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("KAIZEN_PUBLIC_URL", "KAIZEN_SANDBOX_URL", "PORT")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "kaizen_site.settings", "DEBUG": "1", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return orjson.loads(out.strip().splitlines()[-1])


def test_every_process_agrees_whatever_port_honcho_hands_it():
    assert _settings_in_a_process(PORT="5000") == {
        "public": "http://127.0.0.1:8000",
        "sandbox": "http://127.0.0.1:8000",
    }
    assert _settings_in_a_process(PORT="5200", KAIZEN_PUBLIC_URL=PUBLIC + "/") == {"public": PUBLIC, "sandbox": PUBLIC}
    assert _settings_in_a_process(KAIZEN_PUBLIC_URL=PUBLIC, KAIZEN_SANDBOX_URL="http://sandbox.internal:81/") == {
        "public": PUBLIC,
        "sandbox": "http://sandbox.internal:81",
    }


def test_make_run_starts_honcho_at_the_public_port():
    clean = {k: v for k, v in os.environ.items() if k != "KAIZEN_PUBLIC_URL"}
    port = subprocess.run(
        [sys.executable, "-m", "kaizen_site.runtime"],
        cwd=BASE_DIR,
        env={**clean, "KAIZEN_PUBLIC_URL": PUBLIC, "PORT": "5000"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert port.strip() == "9123"


@pytest.mark.parametrize(
    ("raw", "public", "expected"),
    [
        ("", "http://127.0.0.1:8000", "http://127.0.0.1:8001"),
        ("", "https://kaizen.example.com", "https://kaizen.example.com:444"),
        ("https://kaizen.example.com/", "https://kaizen.example.com", "https://kaizen.example.com"),  # behind a proxy
    ],
)
def test_the_stream_url_defaults_to_the_next_port(raw, public, expected):
    assert runtime.stream_url(raw, public=public) == expected


def test_the_procfile_stream_listens_at_the_stream_port():
    clean = {k: v for k, v in os.environ.items() if k not in ("KAIZEN_PUBLIC_URL", "KAIZEN_STREAM_URL")}
    port = subprocess.run(
        [sys.executable, "-m", "kaizen_site.runtime", "stream-port"],
        cwd=BASE_DIR,
        env={**clean, "KAIZEN_PUBLIC_URL": PUBLIC},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert port.strip() == "9124"
    with pytest.raises(RuntimeError, match="KAIZEN_STREAM_URL"):
        runtime.stream_url("ftp://nope", public=PUBLIC)


def test_a_public_host_django_would_refuse_is_reported(settings):
    settings.KAIZEN_PUBLIC_URL = "http://kaizen.local:8000"
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    [warning] = checks.public_url_served(None)
    assert warning.id == "kaizen.W002" and "kaizen.local" in warning.msg
    settings.ALLOWED_HOSTS = [".local"]
    assert checks.public_url_served(None) == []


# --- kaizen_demo and the demo page ------------------------------------------------------------


def _demo(settings, public: str) -> str:
    settings.KAIZEN_PUBLIC_URL = public
    settings.KAIZEN_SANDBOX_URL = public
    out = io.StringIO()
    call_command("kaizen_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_kaizen_demo_prints_and_trusts_the_public_url(settings):
    printed = _demo(settings, PUBLIC)
    project = Project.objects.get(slug="demo")
    key = project.keys.get().public_key
    assert f"Sentry DSN : http://{key}@127.0.0.1:9123/{project.id}" in printed
    for line in ("console    : http://127.0.0.1:9123/admin/", "demo       : http://127.0.0.1:9123/demo/"):
        assert line in printed
    assert "curl -X POST 'http://127.0.0.1:9123/api/v1/issues'" in printed
    assert not re.search(r":8000|:5000", printed)
    assert project.allowed_origins == [PUBLIC, "http://localhost:9123"]
    assert RemediationHook.objects.get(project=project).url == PUBLIC + "/demo/hooks/resync-credits"


@pytest.mark.django_db
def test_moving_the_public_url_adds_its_origins_and_keeps_the_owners(settings):
    _demo(settings, "http://127.0.0.1:8000")
    project = Project.objects.get(slug="demo")
    project.allowed_origins = [*project.allowed_origins, "https://app.example.com"]
    project.save()

    _demo(settings, PUBLIC)
    project.refresh_from_db()
    assert project.allowed_origins == [
        "http://127.0.0.1:8000", "http://localhost:8000", "https://app.example.com", PUBLIC, "http://localhost:9123",
    ]  # fmt: skip
    entry = AuditEntry.objects.get(action="project.update", target="project:demo")
    assert entry.detail["after"]["allowed_origins"] == project.allowed_origins

    _demo(settings, PUBLIC)  # nothing to add: nothing recorded
    assert AuditEntry.objects.filter(action="project.update").count() == 1


@pytest.mark.parametrize(
    ("origin", "status"),
    [(PUBLIC, 202), ("http://localhost:9123", 202), ("http://127.0.0.1:8000", 403), ("https://evil.example", 403)],
)
def test_the_demo_pages_own_report_is_accepted_from_the_page(client, settings, db, drain, origin, status):
    settings.KAIZEN_PUBLIC_URL = PUBLIC
    demo_enable(settings, sandbox_url=PUBLIC)
    page = client.get("/demo/").content.decode()
    key = re.search(r'src="/static/kaizen/detector\.js" data-key="([0-9a-f]+)"', page).group(1)  # the detector's tag

    # As the detector sends a report: text/plain, the key in the query, from the page's origin.
    body = {"type": "SILENT_FAILURE", "message": "Clicked Generate and nothing happened", "route": "/demo/"}
    response = client.post(
        f"/api/v1/issues?key={key}",
        data=orjson.dumps(body),
        content_type="text/plain;charset=UTF-8",
        HTTP_ORIGIN=origin,
    )

    assert response.status_code == status, response.content
    drain()
    stored = Occurrence.objects.filter(message="Clicked Generate and nothing happened")
    if status == 202:
        assert list(stored.values_list("event_id", flat=True)) == [uuid.UUID(response.json()["event_id"])]
    else:
        assert response.json()["error"] == "origin_not_allowed" and not stored.exists()


def test_the_printed_address_itself_opens_the_console(client, db):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_every_local_address_in_the_readme_is_the_public_url_default():
    """The README shows the addresses `make run` serves: they are KAIZEN_PUBLIC_URL's default,
    except where a line shows how to set it."""
    readme = (BASE_DIR / "README.md").read_text(encoding="utf-8")
    shown = [
        (line, url)
        for line in readme.splitlines()
        if "KAIZEN_PUBLIC_URL=" not in line
        for url in re.findall(r"https?://(?:127\.0\.0\.1|localhost)(?::\d+)?", line)
    ]
    assert len(shown) >= 5
    assert [line for line, url in shown if url != runtime.DEFAULT_PUBLIC_URL] == []


def _concurrency(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("CRITICAL_PROCESSES", "CELERY_BROKER_URL")}
    clean["REDIS_URL"] = django_settings.REDIS_URL  # the machine's Redis: the broker too
    return subprocess.run(
        [sys.executable, "-m", "kaizen_site.runtime", "concurrency"],
        cwd=BASE_DIR, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_make_run_starts_two_critical_processes_unless_told_otherwise():
    assert _concurrency().stdout.strip() == "critical=2"
    assert _concurrency(CRITICAL_PROCESSES="3").stdout.strip() == "critical=3"
    # The embedded broker (no Redis) hands a message to one consumer per queue only.
    assert _concurrency(REDIS_URL="", CRITICAL_PROCESSES="3").stdout.strip() == "critical=1"
    for wrong in ("0", "two", "-1"):
        refused = _concurrency(CRITICAL_PROCESSES=wrong)
        assert refused.returncode != 0 and f"CRITICAL_PROCESSES={wrong!r} is not a positive number" in refused.stderr
