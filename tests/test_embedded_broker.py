"""The embedded broker (no Redis) keeps every file under KAIZEN_VAR_DIR, never in the directory a
process happens to be started from (kombu's filesystem transport defaults to ./control)."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def test_publishing_on_the_embedded_broker_writes_only_under_the_var_dir(tmp_path):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="kaizen_site.settings",
        DEBUG="1",
        REDIS_URL="",
        KAIZEN_VAR_DIR=str(var),
        PYTHONPATH=str(ROOT),
    )
    code = (
        "import django; django.setup(); from kaizen_site.celery import app; "
        "app.send_task('healing.tasks.trim_occurrences', queue='ops'); "
        "print(app.connection_for_write().transport_cls)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "filesystem" in done.stdout
    assert list(elsewhere.iterdir()) == []
    assert (var / "broker" / "control" / "ops.exchange").is_file()
    assert any(p.suffix == ".msg" for p in (var / "broker").iterdir())
