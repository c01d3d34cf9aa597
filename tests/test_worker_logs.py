"""Celery workers and beat log as the web processes do: structured, with each record's fields.

Each case runs in a child process, since setting logging up is process-wide."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What `celery worker` and `celery beat` do at start (celery.app.log.Logging.setup), then a
# record with fields, as the application's loggers write them.
CODE = """
import logging, django
django.setup()
from kaizen_site.celery import app
app.log.setup(loglevel="WARNING", redirect_stdouts=False)
logging.getLogger("kaizen.workers").info("below the level asked for")
logging.getLogger("kaizen.workers").warning("P0 worker runs without CPU priority", extra={"refused": ["nice -10"]})
"""


def test_a_worker_keeps_the_structured_logs_their_fields_and_its_level():
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KAIZEN_LOG_JSON": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.startswith("{")]
    said = [r for r in records if r.get("logger") == "kaizen.workers"]
    assert said == [
        {
            "event": "P0 worker runs without CPU priority",
            "level": "warning",
            "logger": "kaizen.workers",
            "timestamp": said[0]["timestamp"],
            "refused": ["nice -10"],
        }
    ]
