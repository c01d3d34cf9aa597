"""The configuration checks: a capability without its credentials is reported as off, a wrong
value as an error naming the setting, and nothing here ever crashes `manage.py check`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import ERROR, INFO, WARNING, run_checks

ROOT = Path(__file__).resolve().parents[1]


def kaizen_problems() -> dict[str, tuple[int, str]]:
    return {m.id: (m.level, m.msg) for m in run_checks() if (m.id or "").startswith("kaizen.")}


@pytest.fixture
def configured(settings):
    """Everything set: the checks have nothing to say."""
    settings.KAIZEN_OWNER_TIMEZONE = "Europe/Paris"
    settings.KAIZEN_OWNER_EMAILS = ["owner@example.com"]
    settings.KAIZEN_PATCH_EXECUTOR_URL = "https://ci.example.com/kaizen/patches"
    settings.KAIZEN_PATCH_EXECUTOR_SECRET = "shared-secret"
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    # Every owner-alert channel (email is configured by the owner's addresses above).
    settings.KAIZEN_BEAMS_INSTANCE_ID, settings.KAIZEN_BEAMS_SECRET_KEY = "instance-1", "beams-secret"
    settings.KAIZEN_TWILIO_ACCOUNT_SID, settings.KAIZEN_TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "twilio-token"
    settings.KAIZEN_TWILIO_FROM, settings.KAIZEN_OWNER_PHONE = "+15005550006", "+33612345678"
    settings.KAIZEN_SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T0/B0/x"
    settings.KAIZEN_DISCORD_WEBHOOK_URL = "https://discord.com/api/webhooks/1/x"
    settings.KAIZEN_METRICS_TOKEN = "scrape-token"
    return settings


def test_fully_configured_has_nothing_to_report(configured):
    assert kaizen_problems() == {}


def test_each_missing_credential_says_which_capability_is_off(configured):
    configured.ANTHROPIC_API_KEY = ""
    configured.KAIZEN_OWNER_EMAILS = []
    configured.KAIZEN_PATCH_EXECUTOR_URL = ""
    problems = kaizen_problems()
    assert set(problems) == {"kaizen.I002", "kaizen.W001", "kaizen.I001", "kaizen.I101"}
    assert problems["kaizen.I101"][1].startswith("Notifications: email is not configured")
    assert problems["kaizen.I002"] == (INFO, "LLM diagnosis off: ANTHROPIC_API_KEY not set")
    assert problems["kaizen.W001"][0] == WARNING and "owner email alerts are off" in problems["kaizen.W001"][1]
    assert problems["kaizen.I001"][0] == INFO and problems["kaizen.I001"][1].startswith("Patch executor off")


def test_a_patch_executor_without_its_secret_is_an_error(configured):
    configured.KAIZEN_PATCH_EXECUTOR_SECRET = ""
    level, message = kaizen_problems()["kaizen.E002"]
    assert level == ERROR and "KAIZEN_PATCH_EXECUTOR_SECRET" in message


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",  # not in the database
        "",  # empty
        "../../etc/passwd",  # outside the zone database
        "/etc/localtime",  # absolute
        "Europe",  # a folder of the zone database, not a zone
        "E" * 300,  # longer than a file name may be
        "UTC\x00",  # NUL
    ],
)
def test_a_wrong_owner_timezone_is_an_error_not_a_crash(configured, name):
    configured.KAIZEN_OWNER_TIMEZONE = name
    assert set(kaizen_problems()) == {"kaizen.E001"}
    level, message = kaizen_problems()["kaizen.E001"]
    assert level == ERROR and "KAIZEN_OWNER_TIMEZONE" in message


def test_manage_py_check_with_no_credentials_runs_and_says_what_is_off(tmp_path):
    """As a newcomer runs it: none of the integrations configured."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ANTHROPIC_", "KAIZEN_", "DJANGO_SETTINGS_MODULE"))
    }
    env.update(SECRET_KEY="check-only", KAIZEN_VAR_DIR=str(tmp_path), KAIZEN_LOG_JSON="0")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr  # Django prints the checks' report on stderr
    assert "Traceback" not in said
    assert "kaizen.I002" in said and "LLM diagnosis off: ANTHROPIC_API_KEY not set" in said
    assert "kaizen.W001" in said
