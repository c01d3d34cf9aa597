"""The whole loop through real processes, started as the Procfile starts them: the demo page's own
reports go over HTTP to the WSGI server, into the Redis stream, through the ingest consumer
process into the database, and to the Celery worker processes that diagnose, verify against the
same server (the sandbox) and roll the fix out. Each of the three demo scenarios must end fixed
for the user who met it, with 10/10 replays on its Change's scorecard."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from healing.models import Change, Issue, IssueEvent, Occurrence, Project
from kaizen_site.sandbox_secret import FILE_NAME as SECRET_FILE
from tests.demo_page import SCENARIOS, DemoPage

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROCESSES = ("web", "consumer", "urgent", "routine")  # beat only sweeps every 30 s: phases end by ETA task
FIXED_FOR_USER = {"deployed", "mitigated", "resolved"}
GAVE_UP = {"aborted", "escalated", "needs_input"}
DEADLINE_SECONDS = 90


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


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
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "KAIZEN_INGEST_MODE": "stream",
        "KAIZEN_VAR_DIR": str(tmp_path / "var"),
        "KAIZEN_DEMO": "1",
        "KAIZEN_SANDBOX_MODE": "1",
        "KAIZEN_PUBLIC_URL": base,  # the demo's origins and the sandbox replays follow it
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
    running: dict[str, subprocess.Popen] = {}
    commands = procfile_commands()
    try:
        for name in PROCESSES:
            with (logs / f"{name}.log").open("w") as log:
                # Through a shell, as honcho runs them: variables in a command line are expanded.
                running[name] = subprocess.Popen(["/bin/sh", "-c", commands[name]], cwd=ROOT, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        _wait_healthy(base=base, web=running["web"], logs=logs)
        yield {"base": base, "var": tmp_path / "var", "logs": logs, "running": running}
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


def _wait_healthy(*, base: str, web: subprocess.Popen, logs: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert web.poll() is None, (logs / "web.log").read_text()[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("the web process never answered /healthz:\n" + (logs / "web.log").read_text()[-3000:])


def _outcome(issue_ids: dict[str, str], *, service) -> dict[str, set[str]]:
    """Each scenario's stages reached, once every issue is fixed for its user or given up on."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        reached = {
            scenario: set(IssueEvent.objects.filter(issue_id=issue_id).values_list("stage", flat=True))
            for scenario, issue_id in issue_ids.items()
        }
        if all(stages & (FIXED_FOR_USER | GAVE_UP) for stages in reached.values()) or time.monotonic() > deadline:
            return reached
        for name, proc in service["running"].items():
            assert proc.poll() is None, f"{name} exited:\n" + (service["logs"] / f"{name}.log").read_text()[-3000:]
        time.sleep(0.5)


def test_the_three_demo_scenarios_heal_from_the_pages_own_reports(service):
    project = Project.objects.get(slug="demo")
    assert service["base"] in project.allowed_origins  # kaizen_demo trusts the page's own origin
    page = DemoPage(base=service["base"], ingest_key=project.keys.get(is_active=True).public_key)

    sent = {"session": page.log_in("alice"), "generate": page.run_into("generate"), "credits": page.run_into("credits")}
    for scenario, response in sent.items():
        assert response is not None, f"the page met no bug in {scenario}"
        assert response.status_code == 202, response.text
        assert response.json()["stage"] == "received"  # into the stream, not written by the web process
    issue_ids = {scenario: response.json()["issue_id"] for scenario, response in sent.items()}

    reached = _outcome(issue_ids, service=service)
    logs = {name: (service["logs"] / f"{name}.log").read_text()[-2000:] for name in PROCESSES}
    for scenario in SCENARIOS:
        issue = Issue.objects.get(pk=issue_ids[scenario])
        assert reached[scenario] & FIXED_FOR_USER and not reached[scenario] & GAVE_UP, (scenario, reached, logs)
        verification = Change.objects.get(issue=issue).scorecard["verification"]
        assert verification["summary"] == "10/10 replays passed", (scenario, verification)
        assert {p["user_id"] for p in verification["probes"]} == {"alice", "kaizen-probe"}
        assert Occurrence.objects.get(issue=issue).payload["request"]["headers"] == {"X-Demo-User": "alice"}
        assert page.sees_the_fix(scenario), scenario

    # The sandbox secret no one configured: made once by these processes, private, shared by all.
    secret = service["var"] / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
