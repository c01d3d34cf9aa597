"""The embedded default: no Redis at all. SQLite, a broker folder under var/, direct ingest."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from django.conf import settings
from django.test import Client
from healing.models import Issue
from healing.projects import project_create

project, issued = project_create(slug="demo", name="Demo", actor="test")
response = Client().post(
    "/api/v1/issues", data={"type": "SILENT_FAILURE", "message": "Generate did nothing"},
    content_type="application/json", HTTP_X_KAIZEN_KEY=issued.key.public_key, HTTP_HOST="localhost",
)
issue = Issue.objects.get()
print(json.dumps({
    "status": response.status_code, "stage": response.json()["stage"], "mode": settings.KAIZEN_INGEST_MODE,
    "broker": settings.CELERY_BROKER_URL, "enqueue_state": issue.enqueue_state, "severity": issue.severity,
}))
"""


@pytest.mark.slow
def test_runs_and_ingests_with_no_redis(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "DEBUG": "1",
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "KAIZEN_VAR_DIR": str(tmp_path),
    }

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    migrate = manage("migrate", "--noinput")
    assert "ingest=direct" in migrate.stdout + migrate.stderr  # the one line saying what was chosen
    out = manage("shell", "-c", SCRIPT).stdout.strip().splitlines()[-1]
    import json

    result = json.loads(out)
    assert result == {
        "status": 202, "stage": "detected", "mode": "direct", "broker": "filesystem://",
        "enqueue_state": "sent", "severity": "P1",
    }  # fmt: skip
    assert (tmp_path / "kaizen.sqlite3").exists()
    messages = list((tmp_path / "broker").glob("*.msg"))
    assert len(messages) == 1 and b"healing.tasks.process_issue" in messages[0].read_bytes()
