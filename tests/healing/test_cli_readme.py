"""The README's `kaizen` block works as written, in order, on a fresh install.

The block is read out of README.md and run by a shell from the checkout, in a newcomer's
environment (no SECRET_KEY, the project's own settings): an example that fails for someone who
copies it fails here first, and the README and this test cannot drift apart.
"""

import io
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from healing.models import AuditEntry, Change, ChangeStatus, Component
from tests.processes import database_url

ROOT = Path(settings.BASE_DIR)
SECTION = "### Kaizen tickets from the command line"
PREFIX = [".venv/bin/python", "manage.py", "kaizen"]


def readme_cli_block() -> str:
    """The section's first ```sh block, verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_the_block_is_kaizen_commands_and_the_settings_they_need():
    lines = [shlex.split(line, comments=True) for line in readme_cli_block().splitlines() if line.strip()]
    commands = [argv for argv in lines if argv[0] != "export"]
    assert len(commands) >= 8
    for argv in commands:
        assert argv[:3] == PREFIX, argv
    for argv in lines[: len(lines) - len(commands)]:
        assert argv[0] == "export" and re.fullmatch(r"[A-Z_]+=\S*", argv[1]), argv  # exports come first


@pytest.mark.django_db(transaction=True)
def test_the_readme_block_runs_in_order_on_a_fresh_install(tmp_path):
    assert not Change.objects.exists() and not Component.objects.exists()  # what a fresh install has
    newcomer = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        # Where `make run` would keep its data; here, the test's own database and Redis.
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "KAIZEN_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_cli_block()],
        cwd=ROOT,
        env=newcomer,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout

    # The example components, loaded from the folder the README names.
    assert set(Component.objects.values_list("id", flat=True)) == {"generate", "credits", "session"}
    assert Component.objects.get(pk="generate").rollback_plan.startswith("Turn the flag generate-retry off")

    # One ticket, moved as the README says, every move in its promotion log.
    change = Change.objects.get()
    assert (change.key, change.component_id, change.severity, change.status) == (
        "KAIZ-001", "generate", "P1", ChangeStatus.IN_PROGRESS,
    )  # fmt: skip
    moves = list(change.promotions.order_by("created_at", "id").values_list("from_status", "to_status", "why"))
    assert moves[1:] == [("draft", "planned", "scoped"), ("planned", "in_progress", "picked up")]
    assert "KAIZ-001: draft → planned" in out and "KAIZ-001  Retry the upstream on 429" in out
    assert "Kaizen digest: 1 open ticket" in out

    # The simulation's alert fired, and --dry-run kept it from writing a ticket.
    assert "ALERT canary-error-rate fired → dry run: no ticket opened" in out
    assert Change.objects.count() == 1 and not Component.objects.filter(pk="canary").exists()
    assert not AuditEntry.objects.filter(target__startswith="component:canary").exists()


@pytest.mark.django_db
def test_simulate_canary_says_it_writes_a_real_ticket():
    out = io.StringIO()
    call_command("kaizen", "simulate-canary", "--duration", "3h", "--tick-ms", "0", stdout=out)
    assert "opens a real ticket (a Change) in the database; --dry-run opens none" in out.getvalue()
    assert Change.objects.get().status == ChangeStatus.PLANNED
