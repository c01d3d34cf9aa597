"""The `kaizen` command: tickets, components from YAML, the digest and the canary simulation."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from healing.changes import canary_sim
from healing.management.commands import kaizen
from healing.models import AuditEntry, Change, ChangeStatus, Component, PromotionLogEntry
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db

S = ChangeStatus


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("kaizen", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def checkout():
    return Component.objects.create(id="checkout", name="Checkout", tier=1, owner="bob", rollback_plan="Flag off.")


# --- Tickets ----------------------------------------------------------------------------------


def test_new_prints_the_id(checkout):
    assert run("new", "Checkout button does nothing", "--component", "checkout", "--severity", "medium") == "KAIZ-001\n"
    assert run("new", "Second", "--severity", "critical", "--actor", "ops") == "KAIZ-002\n"
    first, second = Change.objects.order_by("number")
    assert (first.title, first.component_id, first.severity, first.owner, first.status) == (
        "Checkout button does nothing", "checkout", "P2", "bob", S.DRAFT
    )  # fmt: skip
    assert (second.severity, second.component_id, second.created_by) == ("P0", None, "ops")


@pytest.mark.parametrize(("given", "stored"), [("low", "P3"), ("high", "P1"), ("P0", "P0"), ("p3", "P3")])
def test_new_accepts_words_and_p_levels(given, stored):
    run("new", "t", "--severity", given)
    assert Change.objects.get().severity == stored


def test_new_links_an_issue_and_a_flag():
    issue = IssueFactory()
    run("new", "Fix it", "--issue", str(issue.pk), "--flag", "fix-it")
    change = Change.objects.get()
    assert (change.issue, change.flag_key) == (issue, "fix-it")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--component", "nope"), 'No component "nope"'),
        (("--severity", "urgent"), 'Unknown severity "urgent"'),
        (("--issue", "not-an-id"), "No issue not-an-id"),
        (("--flag", "bad flag"), "flag_key"),
    ],
)
def test_new_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("new", "t", *args)
    assert not Change.objects.exists()


def test_list_is_an_aligned_table_filtered_by_status(checkout):
    run("new", "First ticket", "--component", "checkout")
    run("new", "Second ticket with a much longer title " + "x" * 80, "--severity", "high")
    run("update", "KAIZ-002", "--status", "planned")
    lines = run("list").splitlines()
    assert lines[0].split() == ["ID", "STATUS", "SEV", "COMPONENT", "TITLE", "UPDATED"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("KAIZ-002  planned") and "…" in lines[2]
    assert lines[3].startswith("KAIZ-001  draft  ")
    # Columns line up: every row's title starts where the header's does.
    column = lines[0].index("TITLE")
    assert lines[2][column:].startswith("Second ticket") and lines[3][column:].startswith("First ticket")

    planned = run("list", "--status", "planned")
    assert "KAIZ-002" in planned and "KAIZ-001" not in planned
    assert run("list", "--status", "canary") == "No tickets canary.\n"


def test_show_prints_every_field_and_the_promotion_log(checkout):
    run("new", "Show me", "--component", "checkout", "--objective", "Fewer timeouts", "--actor", "alice")
    run("update", "KAIZ-001", "--status", "planned", "--why", "Ready to go", "--actor", "carol")
    out = run("show", "kaiz-1")
    assert out.startswith("KAIZ-001  Show me\n")
    for label, value in [
        ("status", "planned"),
        ("severity", "P2 degraded"),
        ("component", "checkout (Checkout, tier 1)"),
        ("owner", "bob"),
        ("objective", "Fewer timeouts"),
        ("rollback plan", "Flag off."),
        ("abort criteria", "—"),
    ]:
        assert any(line.startswith(label) and line.endswith(value) for line in out.splitlines()), label
    log = out.split("Promotion log\n")[1].splitlines()
    assert log[0].split() == ["WHEN", "ACTOR", "FROM", "TO", "WHY"]
    assert "alice" in log[2] and "(created)" in log[2] and "draft" in log[2]
    assert log[3].split()[2:] == ["carol", "draft", "planned", "Ready", "to", "go"]


def test_show_an_unknown_ticket():
    with pytest.raises(CommandError, match="No change KAIZ-404"):
        run("show", "KAIZ-404")


def test_update_moves_through_change_transition():
    run("new", "t")
    out = run("update", "KAIZ-001", "--status", "planned", "--why", "go", "--actor", "dan")
    assert out == "KAIZ-001: draft → planned\n"
    entry = PromotionLogEntry.objects.order_by("-id").first()
    assert (entry.actor, entry.from_status, entry.to_status, entry.why) == ("dan", S.DRAFT, S.PLANNED, "go")
    assert AuditEntry.objects.filter(action="change.transition", actor="dan").exists()


def test_update_edits_fields():
    run("new", "t")
    assert run("update", "KAIZ-001", "--owner", "erin", "--severity", "low") == "KAIZ-001: updated owner, severity\n"
    assert Change.objects.filter(owner="erin", severity="P3").exists()
    with pytest.raises(CommandError, match="Nothing to update"):
        run("update", "KAIZ-001")


def test_an_illegal_update_names_the_allowed_moves():
    run("new", "t")
    with pytest.raises(CommandError) as caught:
        run("update", "KAIZ-001", "--status", "complete")
    assert str(caught.value) == (
        "KAIZ-001: draft → complete is not allowed. Allowed moves from draft: planned, aborted."
    )
    assert Change.objects.get().status == S.DRAFT


def test_an_illegal_update_keeps_no_edit_either():
    run("new", "t", "--owner", "bob")
    with pytest.raises(CommandError, match="not allowed"):
        run("update", "KAIZ-001", "--owner", "erin", "--status", "canary")
    assert Change.objects.get().owner == "bob"
    assert not AuditEntry.objects.filter(action="change.update").exists()


def test_an_illegal_update_exits_non_zero(monkeypatch, capsys):
    run("new", "t")
    monkeypatch.setattr(connections, "close_all", lambda: None)  # keep the test's transaction open
    with pytest.raises(SystemExit) as exited:
        kaizen.Command().run_from_argv(["manage.py", "kaizen", "update", "KAIZ-001", "--status", "canary"])
    assert exited.value.code != 0
    assert "draft → canary is not allowed" in capsys.readouterr().err


def test_an_unknown_status_is_refused_by_the_parser():
    run("new", "t")
    with pytest.raises(CommandError, match="invalid choice"):
        run("update", "KAIZ-001", "--status", "shipped")


# --- Components -------------------------------------------------------------------------------


def test_component_add_and_show():
    out = run("component", "add", "payments", "--name", "Payments", "--tier", "1", "--owner", "fay",
              "--slo", "error_rate=0.01", "--slo", "p95_ms=300", "--rollback-plan", "Revert the release.")  # fmt: skip
    assert out == "Component payments added.\n"
    component = Component.objects.get(pk="payments")
    assert (component.tier, component.slo) == (1, {"error_rate": 0.01, "p95_ms": 300.0})
    assert AuditEntry.objects.filter(action="component.create", target="component:payments").exists()
    run("new", "Retry payments", "--component", "payments")
    shown = run("component", "show", "payments")
    for line in ("id             payments", "tier           1", "owner          fay", "open tickets   KAIZ-001"):
        assert line in shown
    assert "error_rate: 0.01" in shown and "p95_ms: 300" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--name", "X", "--tier", "4"), "component add: tier: Input should be less than or equal to 3"),
        (("--name", "", "--tier", "1"), "component add: name: String should have at least 1 character"),
        (("--name", "X", "--tier", "1", "--slo", "fast"), '--slo "fast": use metric=target'),
    ],
)
def test_component_add_refuses_bad_fields(args, message):
    with pytest.raises(CommandError, match=message):
        run("component", "add", "x", *args)
    assert not Component.objects.exists()


def test_component_add_refuses_an_existing_id(checkout):
    with pytest.raises(CommandError, match="exists already"):
        run("component", "add", "checkout", "--name", "Other", "--tier", "2")


GOOD = """\
id: search
name: Search
tier: 2
owner: gus
slo:
  error_rate: 0.02
  p95_ms: 400
rollback_plan: |
  Turn the search flag off.
"""


def test_components_load_from_yaml(tmp_path, checkout):
    (tmp_path / "search.yaml").write_text(GOOD)
    (tmp_path / "more.yml").write_text(
        "- {id: auth, name: Auth, tier: 1}\n- {id: checkout, name: Checkout v2, tier: 1, owner: bob}\n"
    )
    (tmp_path / "notes.txt").write_text("not a component")
    out = run("components", "--load", str(tmp_path))
    lines = out.splitlines()
    assert lines[0] == "Loaded 3 components from 2 file(s)."
    assert lines[1].split() == ["ID", "NAME", "TIER", "OWNER", "SLO"]
    assert [line.split()[0] for line in lines[3:]] == ["auth", "checkout", "search"]
    search = Component.objects.get(pk="search")
    assert (search.tier, search.owner, search.slo) == (2, "gus", {"error_rate": 0.02, "p95_ms": 400})
    assert search.rollback_plan == "Turn the search flag off."
    assert Component.objects.get(pk="checkout").name == "Checkout v2"
    assert AuditEntry.objects.filter(action="component.update", target="component:checkout").exists()

    # Loading the same files again changes nothing and records nothing.
    audits = AuditEntry.objects.count()
    run("components", "--load", str(tmp_path))
    assert AuditEntry.objects.count() == audits
    assert run("components").splitlines()[0].split() == ["ID", "NAME", "TIER", "OWNER", "SLO"]


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (GOOD.replace("tier: 2", "tier: 7"), "tier", "less than or equal to 3"),
        (GOOD.replace("tier: 2", "tier: two"), "tier", "valid integer"),
        (GOOD.replace("name: Search\n", ""), "name", "Field required"),
        (GOOD.replace("p95_ms: 400", "p95_ms: fast"), "slo.p95_ms", "valid"),
        (GOOD + "colour: blue\n", "colour", "Extra inputs are not permitted"),
        (GOOD.replace("id: search", "id: 'has spaces'"), "id", "should match pattern"),
    ],
)
def test_a_bad_yaml_file_names_the_file_and_the_field_and_loads_nothing(tmp_path, text, field, problem):
    (tmp_path / "a-good.yaml").write_text(GOOD.replace("search", "first"))
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(text)
    with pytest.raises(CommandError) as caught:
        run("components", "--load", str(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{bad}: {field}: ") and problem in message
    assert not Component.objects.exists()  # not even the good file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: [unclosed\n", "not valid YAML at line"),
        ("", "expected a mapping of component fields"),
        ("- just a string\n", "[0]: expected a mapping"),
    ],
)
def test_an_unreadable_yaml_file_is_named(tmp_path, text, message):
    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    with pytest.raises(CommandError, match="broken.yaml") as caught:
        run("components", "--load", str(tmp_path))
    assert message in str(caught.value)


def test_a_component_defined_twice_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(CommandError, match=r"b.yaml: id: search is also defined in .*a.yaml"):
        run("components", "--load", str(tmp_path))
    assert not Component.objects.exists()


def test_components_load_needs_a_folder_of_yaml(tmp_path):
    with pytest.raises(CommandError, match="No .yaml or .yml files"):
        run("components", "--load", str(tmp_path))
    with pytest.raises(CommandError, match="is not a folder"):
        run("components", "--load", str(tmp_path / "missing"))


# --- Digest -------------------------------------------------------------------------------------


def test_digest_with_no_open_ticket_is_suppressed():
    assert run("digest", "--dry-run") == "0 tickets – digest suppressed\n"
    run("new", "done")
    run("update", "KAIZ-001", "--status", "aborted")
    assert run("digest", "--dry-run") == "0 tickets – digest suppressed\n"


def test_digest_counts_open_tickets():
    for severity in ("high", "high", "low"):
        run("new", "t", "--severity", severity)
    run("update", "KAIZ-003", "--status", "planned")
    lines = run("digest", "--dry-run").splitlines()
    assert lines[0] == "Kaizen digest: 3 open tickets"
    assert lines[1].split() == ["STATUS", "P0", "P1", "P2", "P3", "TOTAL"]
    assert lines[3].split() == ["draft", "0", "2", "0", "0", "2"]
    assert lines[4].split() == ["planned", "0", "0", "0", "1", "1"]


def test_digest_without_dry_run_says_sending_is_off():
    run("new", "t")
    err = io.StringIO()
    call_command("kaizen", "digest", stdout=io.StringIO(), stderr=err)
    assert "Sending is off" in err.getvalue()


# --- Canary simulation ----------------------------------------------------------------------------


def test_the_series_crosses_at_1h30_and_the_rule_fires_at_2h00():
    samples, alerts = canary_sim.simulate(duration=timedelta(hours=3))
    by_time = {canary_sim.clock(s.at): s for s in samples}
    assert len(samples) == 37  # every 5 minutes, both ends included
    assert by_time["1h25"].error_rate < 2.0 <= by_time["1h30"].error_rate
    assert by_time["0h40"].state == "pending" and by_time["0h45"].state == "ok"  # one bad sample pages nobody
    assert by_time["1h55"].state == "pending" and by_time["2h00"].state == "firing"
    assert [s.at for s in samples if s.fired] == [timedelta(hours=2)]
    (alert,) = alerts
    assert (alert.fired_at, alert.breached_since) == (timedelta(hours=2), timedelta(hours=1, minutes=30))


def test_simulate_canary_opens_one_planned_ticket_when_the_alert_fires():
    out = run("simulate-canary", "--duration", "3h", "--tick-ms", "0")
    lines = out.splitlines()
    fired_at = next(i for i, line in enumerate(lines) if "ALERT canary-error-rate fired" in line)
    assert lines[fired_at - 1].startswith("T+2h00") and "firing" in lines[fired_at - 1]
    assert "opened KAIZ-001 (planned)" in lines[fired_at]
    assert lines[-1] == "1 alert(s); ticket(s) opened: KAIZ-001."
    assert any(line.startswith("T+1h30") and "pending" in line for line in lines)

    change = Change.objects.get()
    assert (change.status, change.component_id, change.severity) == (S.PLANNED, "canary", "P1")
    assert change.created_by == "kaizen"  # the alert opened it
    planned = change.promotions.get(to_status=S.PLANNED)
    assert planned.actor == "kaizen"
    assert planned.why.startswith("Alert canary-error-rate fired at T+2h00") and "since T+1h30" in planned.why
    canary = Component.objects.get(pk="canary")
    assert canary.rollback_plan and change.rollback_plan == canary.rollback_plan

    # A second run reuses the component and opens its own ticket.
    run("simulate-canary", "--tick-ms", "0")
    assert Change.objects.count() == 2 and Component.objects.count() == 1


def test_simulate_canary_too_short_to_fire_opens_nothing():
    out = run("simulate-canary", "--duration", "1h55m", "--tick-ms", "0")
    assert out.splitlines()[-1] == "The alert did not fire: no ticket opened."
    assert not Change.objects.exists()


def test_simulate_canary_refuses_a_bad_duration():
    with pytest.raises(CommandError, match="not a duration"):
        run("simulate-canary", "--duration", "three hours")
