"""The README's `kaizen` block works, line by line and in order, on a fresh install.

The commands are read out of README.md, so the README and this test cannot drift apart: an
example a newcomer would copy that fails on a fresh database fails here first.
"""

import io
import re
import shlex
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from healing.models import AuditEntry, Change, ChangeStatus, Component

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
SECTION = "### Kaizen tickets from the command line"
PREFIX = [".venv/bin/python", "manage.py", "kaizen"]


def readme_cli_block() -> list[list[str]]:
    """The argv of each command in the section's first ```sh block (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_block_is_all_kaizen_commands():
    commands = readme_cli_block()
    assert len(commands) >= 8
    for argv in commands:
        assert argv[:3] == PREFIX, argv


def test_the_readme_block_runs_in_order_on_a_fresh_install(monkeypatch):
    assert not Change.objects.exists() and not Component.objects.exists()  # what a fresh install has
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the checkout

    outputs = {}
    for argv in readme_cli_block():
        out = io.StringIO()
        call_command("kaizen", *argv[3:], stdout=out, stderr=io.StringIO())  # a CommandError fails the test
        outputs[" ".join(argv[3:5])] = out.getvalue()

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
    assert "KAIZ-001" in outputs["list --status"] and "KAIZ-001  Retry the upstream on 429" in outputs["show KAIZ-001"]
    assert "1 open ticket" in outputs["digest --dry-run"]

    # The simulation's alert fired, and --dry-run kept it from writing a ticket.
    simulation = outputs["simulate-canary --duration"]
    assert "ALERT canary-error-rate fired → dry run: no ticket opened" in simulation
    assert Change.objects.count() == 1 and not Component.objects.filter(pk="canary").exists()
    assert not AuditEntry.objects.filter(target__startswith="component:canary").exists()


def test_simulate_canary_says_it_writes_a_real_ticket():
    out = io.StringIO()
    call_command("kaizen", "simulate-canary", "--duration", "3h", "--tick-ms", "0", stdout=out)
    assert "opens a real ticket (a Change) in the database; --dry-run opens none" in out.getvalue()
    assert Change.objects.get().status == ChangeStatus.PLANNED
