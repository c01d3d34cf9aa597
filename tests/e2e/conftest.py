"""The live service for end-to-end tests, started as the Procfile starts it, and a headless
Chromium (Debian's package, driven by Playwright with `executable_path`; never a downloaded
browser) whose screenshots are kept as test artifacts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import database_url, free_port, processes_stop, procfile_start, wait_answering

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# beat only sweeps every 30 s: rollout phases end by ETA task.
PROCESSES = ("web", "stream", "consumer", "critical", "urgent", "routine")
CHROMIUM = os.environ.get("KAIZEN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("KAIZEN_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts"))
# As a machine without outside network needs them: no background connections, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def service(tmp_path, settings, request):
    """Web, consumer and both worker groups on the test database and this run's Redis, with 1-second
    rollout phases (a test's `rollout_phase_seconds` mark sets others) and no sandbox secret
    configured: the processes make and share their own."""
    marked = request.node.get_closest_marker("rollout_phase_seconds")
    phase_seconds = str(marked.args[0] if marked else 1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stream = f"http://127.0.0.1:{free_port()}"  # the ASGI server of the users' event streams
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "KAIZEN_INGEST_MODE": "stream",
        "KAIZEN_VAR_DIR": str(tmp_path / "var"),
        "KAIZEN_DEMO": "1",
        "KAIZEN_SANDBOX_MODE": "1",
        "KAIZEN_PUBLIC_URL": base,  # the demo's origins and the sandbox replays follow it
        "KAIZEN_STREAM_URL": stream,
        "KAIZEN_ROLLOUT_CANARY_SECONDS": phase_seconds,
        "KAIZEN_ROLLOUT_PARTIAL_SECONDS": phase_seconds,
        "KAIZEN_ROLLOUT_FULL_SECONDS": phase_seconds,
        "ANTHROPIC_API_KEY": "",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # as `make run` hands honcho the virtualenv
    }
    env.pop("KAIZEN_SANDBOX_SECRET", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    # As `make run` does before starting them: the demo project, its flags and its webhook.
    subprocess.run([sys.executable, "manage.py", "kaizen_demo"], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    # ...and its static files (the browser detector, rrweb), which whitenoise serves from STATIC_ROOT.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    running: dict[str, subprocess.Popen] = {}
    try:
        for name in PROCESSES:
            running[name] = procfile_start(name, env=env, log_path=logs / f"{name}.log")
        wait_answering(f"{base}/healthz", proc=running["web"], log_path=logs / "web.log")
        wait_answering(f"{stream}/healthz", proc=running["stream"], log_path=logs / "stream.log")
        yield {"base": base, "stream": stream, "var": tmp_path / "var", "logs": logs, "running": running}
    finally:
        processes_stop(running.values())


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium under Playwright. Skips (with the reason) where it is not installed;
    `.ci/run` installs it, so CI always runs these tests."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread for as long as the browser lives;
    # Django would take every ORM call made meanwhile (the tests', the database set-up and flushes
    # of whichever test comes next) for an async one. They are plain synchronous calls.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium, request):
    """A fresh browser context and page."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def artifacts(request) -> Path:
    """A folder for this test's screenshots: var/test-artifacts/<test name>/ (KAIZEN_TEST_ARTIFACTS)."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
