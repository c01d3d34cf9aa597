"""The live service for end-to-end tests, started as the Procfile starts it, and a headless
Chromium (Debian's package, driven by Playwright with `executable_path`; never a downloaded
browser) whose screenshots are kept as test artifacts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.processes import database_url, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# beat only sweeps every 30 s: rollout phases end by ETA task.
PROCESSES = ("web", "stream", "consumer", "urgent", "routine")
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


def procfile_commands() -> dict[str, str]:
    """The Procfile's command lines, by process name."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


@pytest.fixture
def service(tmp_path, settings):
    """Web, consumer and both worker groups on the test database and this run's Redis, with 1-second
    rollout phases and no sandbox secret configured: the processes make and share their own."""
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
        "KAIZEN_ROLLOUT_CANARY_SECONDS": "1",
        "KAIZEN_ROLLOUT_PARTIAL_SECONDS": "1",
        "KAIZEN_ROLLOUT_FULL_SECONDS": "1",
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
    commands = procfile_commands()
    try:
        for name in PROCESSES:
            with (logs / f"{name}.log").open("w") as log:
                # Through a shell, as honcho runs them: variables in a command line are expanded.
                running[name] = subprocess.Popen(["/bin/sh", "-c", commands[name]], cwd=ROOT, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        _wait_healthy(base=base, web=running["web"], logs=logs)
        _wait_healthy(base=stream, web=running["stream"], logs=logs, name="stream")
        yield {"base": base, "stream": stream, "var": tmp_path / "var", "logs": logs, "running": running}
    finally:
        for proc in running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in running.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in running.values():
            _group_gone(proc.pid)


def _group_gone(pgid: int) -> None:
    """Wait until the whole process group has exited, not only its shell: a server still shutting
    down holds database connections the test's teardown flush would deadlock with."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_healthy(*, base: str, web: subprocess.Popen, logs: Path, name: str = "web") -> None:
    deadline = time.monotonic() + 90  # a loaded two-core machine boots Django slowly
    while time.monotonic() < deadline:
        assert web.poll() is None, (logs / f"{name}.log").read_text()[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the {name} process never answered /healthz:\n" + (logs / f"{name}.log").read_text()[-3000:])


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
