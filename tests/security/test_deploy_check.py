"""`manage.py check --deploy` is clean under production settings: an https public address, DEBUG
off, a long secret key and the hosts set. Run as a fresh process, since settings are read once."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _deploy_check(tmp_path, **overrides) -> str:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "kaizen.example.com",
        "KAIZEN_PUBLIC_URL": "https://kaizen.example.com",
        "KAIZEN_OWNER_EMAILS": "owner@example.com",
        "KAIZEN_METRICS_TOKEN": "scrape-token",
        "KAIZEN_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if connection.vendor == "postgresql"
        else "",
        **overrides,
    }
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    return done.stdout + done.stderr


def test_check_deploy_has_no_warnings_in_production(tmp_path, db):
    output = _deploy_check(tmp_path)
    assert "System check identified" in output or "no issues" in output, output
    assert not re.findall(r"\([a-z_.]+\.[WE]\d+\)", output), output


def test_over_plain_http_the_https_settings_are_off_and_check_deploy_says_so(tmp_path, db):
    output = _deploy_check(tmp_path, KAIZEN_PUBLIC_URL="http://127.0.0.1:8000", ALLOWED_HOSTS="127.0.0.1")
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= set(
        re.findall(r"\((security\.W\d+)\)", output)
    ), output
