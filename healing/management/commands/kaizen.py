"""The Kaizen Loop on the command line: open, list, show and move tickets (Changes), manage the
components they touch, preview the digest, and run the canary simulation."""

import getpass
import json
import re
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from healing.changes import canary_sim, components, patch_executor
from healing.changes import lifecycle as changes
from healing.models import Change, ChangeStatus, Component, Issue, Severity

TITLE_WIDTH = 60
SUPPRESSED = "0 tickets – digest suppressed"


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "cli"


def _duration(text: str) -> timedelta:
    """3h, 90m, 2h30m, 45s."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or not match:
        raise CommandError(f'"{text}" is not a duration: use hours, minutes and seconds, such as 3h, 90m or 2h30m.')
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _slo_pair(text: str) -> tuple[str, float]:
    metric, sep, target = text.partition("=")
    try:
        if not sep or not metric.strip():
            raise ValueError
        return metric.strip(), float(target)
    except ValueError:
        raise CommandError(f'--slo "{text}": use metric=target, such as error_rate=0.01.') from None


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """Label / value lines; a value over several lines is indented under its first line."""
    width = max(len(label) for label, _ in pairs)
    out = []
    for label, value in pairs:
        text = "—" if value in (None, "", [], {}) else str(value)
        first, *rest = text.splitlines() or [""]
        out.append(f"{label.ljust(width)}  {first}")
        out += [f"{' ' * width}  {line}" for line in rest]
    return "\n".join(out)


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _short(text: str, width: int = TITLE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Command(BaseCommand):
    help = "The Kaizen Loop: tickets (Changes), components, the digest and the canary simulation."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")

        def writer(name: str, **kwargs):
            p = sub.add_parser(name, **kwargs)
            p.add_argument("--actor", default=_default_actor(), help="Who is acting, for the logs (default: you).")
            return p

        p = writer("new", help="Open a ticket (a draft); prints its id.")
        p.add_argument("title")
        p.add_argument("--component", help="A component id (see `kaizen components`; examples in components/).")
        p.add_argument("--severity", default="medium", help="low, medium, high, critical or P3–P0 (default: medium).")
        p.add_argument("--owner", default="", help="Default: the component's owner.")
        p.add_argument("--objective", default="")
        p.add_argument("--issue", help="The id of the issue this change fixes.")
        p.add_argument("--flag", default="", help="The feature flag the change rolls out behind.")

        p = sub.add_parser("list", help="Tickets, newest first.")
        p.add_argument("--status", choices=ChangeStatus.values)
        p.add_argument("--limit", type=int, default=100, help="At most this many (default 100).")

        p = sub.add_parser("show", help="A ticket: every field and its promotion log.")
        p.add_argument("id", help="KAIZ-001")

        p = writer("update", help="Move a ticket to another status, or edit its title, owner or severity.")
        p.add_argument("id", help="KAIZ-001")
        p.add_argument("--status", choices=ChangeStatus.values)
        p.add_argument("--why", default="", help="Why (kept in the promotion log).")
        p.add_argument("--title")
        p.add_argument("--owner")
        p.add_argument("--severity")

        p = sub.add_parser("component", help="Add or show one component.")
        component = p.add_subparsers(dest="component_action", required=True, metavar="add|show")
        add = component.add_parser("add", help="Add a component.")
        add.add_argument("--actor", default=_default_actor())
        add.add_argument("id")
        add.add_argument("--name", required=True)
        add.add_argument("--tier", type=int, required=True, help="1 (critical) to 3.")
        add.add_argument("--owner", default="")
        add.add_argument("--slo", action="append", default=[], metavar="METRIC=TARGET", help="Repeatable.")
        add.add_argument("--rollback-plan", default="")
        show = component.add_parser("show", help="Show a component.")
        show.add_argument("id")

        p = writer("components", help="List components; --load DIR first creates or updates them from YAML.")
        p.add_argument("--load", metavar="DIR", help="A folder of .yaml/.yml files, one component (or a list) each.")

        p = sub.add_parser("digest", help="Open tickets by status and severity.")
        p.add_argument("--dry-run", action="store_true", help="Print the digest instead of sending it.")

        # No --actor: the ticket is opened by the alert, an automatic action.
        p = sub.add_parser(
            "simulate-canary",
            help="A degrading canary on a compressed clock; its alert opens a real ticket (--dry-run: none).",
        )
        p.add_argument("--dry-run", action="store_true", help="Run the simulation and the alert, open no ticket.")
        p.add_argument("--duration", default="3h", type=_duration, help="Simulated time, e.g. 3h or 90m.")
        p.add_argument("--step", default="5m", type=_duration, help="Time between samples (default 5m).")
        p.add_argument("--tick-ms", default=2.0, type=float, help="Real milliseconds per step (default 2).")

    def handle(self, *args, subcommand: str, **options):
        handler = getattr(self, "do_" + subcommand.replace("-", "_"))
        try:
            handler(**options)
        except changes.ChangeError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                raise CommandError("; ".join(f"{name}: {' '.join(m)}" for name, m in exc.message_dict.items())) from exc
            raise CommandError(" ".join(exc.messages)) from exc

    def out(self, text: str = "") -> None:
        self.stdout.write(text)

    # --- Tickets ----------------------------------------------------------------------------

    def do_new(self, *, title, component, severity, owner, objective, issue, flag, actor, **_):
        change = changes.change_create(
            title=title,
            severity=severity,
            component=self._component(component) if component else None,
            issue=self._issue(issue) if issue else None,
            owner=owner,
            objective=objective,
            flag_key=flag,
            actor=actor,
        )
        self.out(change.key)

    def do_list(self, *, status, limit, **_):
        rows = Change.objects.order_by("-number")
        if status:
            rows = rows.filter(status=status)
        found = [
            (c.key, c.status, c.severity, c.component_id or "—", _short(c.title), _when(c.updated_at))
            for c in rows[:limit]
        ]
        if not found:
            self.out("No tickets" + (f" {status}." if status else "."))
            return
        self.out(table(("ID", "STATUS", "SEV", "COMPONENT", "TITLE", "UPDATED"), found))

    def do_show(self, *, id, **_):
        c = changes.change_get(key=id)
        component = f"{c.component.id} ({c.component.name}, tier {c.component.tier})" if c.component else None
        plan = "\n".join(
            f"{n}. {step['action']} {json.dumps(step.get('params') or {}, sort_keys=True)}"
            for n, step in enumerate(c.plan, 1)
        )
        patch = None
        if c.patch_diff or c.patch_summary:
            patch = f"{c.patch_summary or '(no summary)'}\n({len(c.patch_diff.splitlines())} lines of diff)"
            patch_state = c.get_patch_state_display()
            if c.patch_state == "awaiting_approval":
                patch_state = patch_executor.NOT_CONFIGURED
            patch += f"\nstate: {patch_state}" + (f", build {c.patch_build_id}" if c.patch_build_id else "")
            patch += f"\nerror: {c.patch_error}" if c.patch_error else ""
        self.out(f"{c.key}  {c.title}")
        self.out(
            _fields([
                ("status", c.status),
                ("severity", c.get_severity_display()),
                ("component", component),
                ("owner", c.owner),
                ("issue", f"{c.issue_id} {c.issue}" if c.issue else None),
                ("flag", c.flag_key),
                ("objective", c.objective),
                ("success criteria", c.success_criteria),
                ("abort criteria", c.abort_criteria),
                ("rollback plan", c.rollback_plan),
                ("plan", plan),
                ("patch", patch),
                ("scorecard", json.dumps(c.scorecard, indent=2, sort_keys=True) if c.scorecard else None),
                ("created", f"{_when(c.created_at)} by {c.created_by}"),
                ("updated", _when(c.updated_at)),
            ])
        )  # fmt: skip
        self.out("")
        self.out("Promotion log")
        entries = [
            (_when(e.created_at), e.actor, e.from_status or "(created)", e.to_status, e.why)
            for e in c.promotions.order_by("created_at", "id")
        ]
        self.out(table(("WHEN", "ACTOR", "FROM", "TO", "WHY"), entries))

    def do_update(self, *, id, status, why, title, owner, severity, actor, **_):
        edits = {name: value for name, value in (("title", title), ("owner", owner), ("severity", severity)) if value}
        if not status and not edits:
            raise CommandError("Nothing to update: give --status, --title, --owner or --severity.")
        change = changes.change_get(key=id)
        with transaction.atomic():  # an edit and a refused move: neither is kept
            if edits:
                change = changes.change_update(change=change, fields=edits, actor=actor)
            if status:
                before = change.status
                changes.change_transition(change=change, to=status, actor=actor, why=why)
        if status:
            self.out(f"{change.key}: {before} → {change.status}")
        else:
            self.out(f"{change.key}: updated {', '.join(edits)}")

    # --- Components -------------------------------------------------------------------------

    def do_component(self, *, component_action, **options):
        if component_action == "add":
            data = {
                "id": options["id"],
                "name": options["name"],
                "tier": options["tier"],
                "owner": options["owner"],
                "slo": dict(_slo_pair(pair) for pair in options["slo"]),
                "rollback_plan": options["rollback_plan"],
            }
            spec = components.component_spec_parse(data, source="component add")
            component = components.component_create(spec=spec, actor=options["actor"])
            self.out(f"Component {component.id} added.")
            return
        c = self._component(options["id"])
        open_changes = c.changes.filter(status__in=changes.OPEN_STATUSES).order_by("-number")
        self.out(
            _fields([
                ("id", c.id),
                ("name", c.name),
                ("tier", c.tier),
                ("owner", c.owner),
                ("slo", "\n".join(f"{metric}: {target:g}" for metric, target in sorted(c.slo.items()))),
                ("rollback plan", c.rollback_plan),
                ("open tickets", ", ".join(change.key for change in open_changes)),
            ])
        )  # fmt: skip

    def do_components(self, *, load, actor, **_):
        if load:
            folder = Path(load)
            if not folder.is_dir():
                raise CommandError(f"{folder} is not a folder.")
            files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not files:
                raise CommandError(f"No .yaml or .yml files in {folder}.")
            loaded = components.components_load(paths=files, actor=actor)
            self.out(f"Loaded {len(loaded)} component{'s' if len(loaded) != 1 else ''} from {len(files)} file(s).")
        rows = [
            (c.id, c.name, c.tier, c.owner or "—", ", ".join(f"{k}={v:g}" for k, v in sorted(c.slo.items())) or "—")
            for c in Component.objects.order_by("id")
        ]
        self.out(table(("ID", "NAME", "TIER", "OWNER", "SLO"), rows) if rows else "No components.")

    # --- Digest and simulation ----------------------------------------------------------------

    def do_digest(self, *, dry_run, **_):
        digest = changes.changes_digest()
        if not digest.total:
            self.out(SUPPRESSED)
            return
        severities = Severity.values
        rows = [
            (status, *(digest.counts[status].get(sev, 0) for sev in severities), sum(digest.counts[status].values()))
            for status in changes.OPEN_STATUSES
            if status in digest.counts
        ]
        self.out(f"Kaizen digest: {digest.total} open ticket{'s' if digest.total != 1 else ''}")
        self.out(table(("STATUS", *severities, "TOTAL"), rows))
        if not dry_run:
            # No notification channel exists yet: the console is the fallback, and says so.
            self.stderr.write("Sending is off (no notification channel configured): the digest is printed here only.")

    def do_simulate_canary(self, *, duration, step, tick_ms, dry_run, **_):
        if step <= timedelta(0):
            raise CommandError("--step must be longer than zero.")
        rule = canary_sim.AlertRule()
        self.out(
            f"Simulating {canary_sim.length(duration)} of canary traffic, one sample every {canary_sim.length(step)}. "
            f"Rule {rule.name}: error rate ≥ {rule.threshold:.2f} % for {canary_sim.length(rule.sustain)}."
        )
        if dry_run:
            self.out("Dry run: when the alert fires, no ticket is opened.")
        else:
            self.out("When the alert fires it opens a real ticket (a Change) in the database; --dry-run opens none.")
        self.out(f"{'TIME':<8} {'RATE':>7}  ALERT")

        def report(sample: canary_sim.Sample, fired: canary_sim.Alert | None, change: Change | None) -> None:
            bar = "#" * round(sample.error_rate * 4)
            line = f"T+{canary_sim.clock(sample.at):<6} {sample.error_rate:5.2f} %  {sample.state:<8} {bar}"
            self.out(line.rstrip())
            if change is not None:
                self.out(f"        ALERT {rule.name} fired → opened {change.key} ({change.status}): {change.title}")
            elif fired is not None:
                self.out(f"        ALERT {rule.name} fired → dry run: no ticket opened")

        run = canary_sim.canary_run(duration=duration, step=step, tick=tick_ms / 1000, report=report, dry_run=dry_run)
        if run.changes:
            self.out(f"{len(run.alerts)} alert(s); ticket(s) opened: {', '.join(c.key for c in run.changes)}.")
        elif run.alerts:
            self.out(f"{len(run.alerts)} alert(s); dry run: no ticket opened.")
        else:
            self.out("The alert did not fire: no ticket opened.")

    # --- Look-ups -------------------------------------------------------------------------------

    def _component(self, component_id: str) -> Component:
        component = Component.objects.filter(pk=component_id).first()
        if component is None:
            known = ", ".join(Component.objects.values_list("id", flat=True)[:20]) or "none yet"
            raise CommandError(
                f'No component "{component_id}" (known: {known}). Add it with `kaizen component add`, '
                "or load definitions with `kaizen components --load DIR` (the examples: components/)."
            )
        return component

    def _issue(self, issue_id: str) -> Issue:
        try:
            issue = Issue.objects.filter(pk=uuid.UUID(issue_id)).first()
        except ValueError:
            issue = None
        if issue is None:
            raise CommandError(f"No issue {issue_id}.")
        return issue
