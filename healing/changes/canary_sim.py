"""A canary release whose error rate degrades, run on a compressed clock and watched by an alert
rule; when the rule fires, a real Change (Kaizen ticket) is opened for it, unless the run is a dry
run. `kaizen simulate-canary` runs this.

The rule is a Prometheus-style `for:` rule: the condition must hold on every sample for the whole
sustain window before it fires, so a single bad sample (the blip at 0h40) pages nobody. With the
defaults the error rate crosses the threshold at 1h30 and the alert fires at 2h00.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction

from healing.audit import AUTOMATIC
from healing.changes.components import ComponentSpec, component_ensure
from healing.changes.lifecycle import change_create, change_transition
from healing.models import Change, ChangeStatus, Severity


@dataclass(frozen=True)
class AlertRule:
    name: str = "canary-error-rate"
    threshold: float = 2.0  # percent of requests failing
    sustain: timedelta = timedelta(minutes=30)


CANARY_COMPONENT = ComponentSpec(
    id="canary",
    name="Canary release",
    tier=1,
    slo={"error_rate_percent": AlertRule().threshold},
    rollback_plan="Turn the canary's flag off: every user goes back to the stable release.",
)


@dataclass(frozen=True)
class Degradation:
    """The synthetic series: a flat baseline, one short blip, then a linear climb."""

    baseline: float = 0.5  # percent
    starts_at: timedelta = timedelta(hours=1)
    climb_per_hour: float = 3.0  # percent per hour: from 0.5 % at 1h00 it crosses 2 % at 1h30
    blip_at: timedelta | None = timedelta(minutes=40)
    blip: float = 2.4

    def error_rate(self, at: timedelta) -> float:
        if self.blip_at is not None and at == self.blip_at:
            return self.blip
        hours_degrading = max((at - self.starts_at).total_seconds(), 0) / 3600
        return round(self.baseline + self.climb_per_hour * hours_degrading, 3)


@dataclass(frozen=True)
class Sample:
    at: timedelta
    error_rate: float
    state: str  # ok | pending | firing
    fired: bool = False  # the alert fired on this sample


@dataclass(frozen=True)
class Alert:
    rule: AlertRule
    fired_at: timedelta
    breached_since: timedelta
    error_rate: float

    def describe(self) -> str:
        return (
            f"Alert {self.rule.name} fired at T+{clock(self.fired_at)}: "
            f"canary error rate ≥ {self.rule.threshold:.2f} % for {length(self.rule.sustain)} "
            f"(since T+{clock(self.breached_since)}; {self.error_rate:.2f} % now)."
        )


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # one per alert, in order; none on a dry run


def clock(span: timedelta) -> str:
    """A point on the timeline: 2h00."""
    minutes = int(span.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}"


def length(span: timedelta) -> str:
    """A length of time: 30 min, 3 h, 2 h 30 min."""
    seconds = int(span.total_seconds())
    hours, minutes = divmod(seconds // 60, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else [])
    return " ".join(parts) or f"{seconds} s"


def simulate(
    *,
    duration: timedelta,
    step: timedelta = timedelta(minutes=5),
    rule: AlertRule = AlertRule(),  # noqa: B008 - frozen, so sharing the default is safe
    degradation: Degradation = Degradation(),  # noqa: B008
    tick: float = 0.0,
    on_sample: Callable[[Sample, Alert | None], None] | None = None,
) -> tuple[list[Sample], list[Alert]]:
    """Evaluate the rule on every sample from T+0 to `duration`; `on_sample` sees each sample and
    the alert it fired, if any. `tick` is the real time in seconds one step takes: the clock is
    compressed, a few milliseconds stand for `step`."""
    if step <= timedelta(0):
        raise ValueError("The step must be positive.")
    samples: list[Sample] = []
    alerts: list[Alert] = []
    breached_since: timedelta | None = None
    firing = False
    at = timedelta(0)
    while at <= duration:
        rate = degradation.error_rate(at)
        fired = None
        if rate >= rule.threshold:
            breached_since = at if breached_since is None else breached_since
            if not firing and at - breached_since >= rule.sustain:
                firing, fired = True, Alert(rule=rule, fired_at=at, breached_since=breached_since, error_rate=rate)
                alerts.append(fired)
        else:
            breached_since, firing = None, False  # resolved: a later breach is a new alert
        state = "firing" if firing else "pending" if breached_since is not None else "ok"
        sample = Sample(at=at, error_rate=rate, state=state, fired=fired is not None)
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample, fired)
        if tick > 0:
            time.sleep(tick)
        at += step
    return samples, alerts


def alert_open_change(*, alert: Alert, actor: str = AUTOMATIC) -> Change:
    """The ticket an alert opens: planned, on the canary component (created if missing)."""
    rule = alert.rule
    with transaction.atomic():
        component = component_ensure(spec=CANARY_COMPONENT, actor=actor)
        change = change_create(
            title=f"Canary error rate at {alert.error_rate:.2f} % (simulated degradation)",
            severity=Severity.P1,
            component=component,
            actor=actor,
            objective="Bring the canary's error rate back under its SLO, or take the canary out.",
            success_criteria=f"Error rate below {rule.threshold:.2f} % for {length(rule.sustain)} on the canary.",
            abort_criteria=f"Error rate still at or above {rule.threshold:.2f} % after the rollback.",
            why=f"Opened by alert {rule.name}.",
        )
        change_transition(change=change, to=ChangeStatus.PLANNED, actor=actor, why=alert.describe())
    return change


def canary_run(
    *,
    duration: timedelta,
    step: timedelta = timedelta(minutes=5),
    tick: float = 0.0,
    report: Callable[[Sample, Alert | None, Change | None], None] | None = None,
    actor: str = AUTOMATIC,
    dry_run: bool = False,
) -> Run:
    """Simulate, and open a ticket the moment an alert fires (`report` gets the sample, the alert
    it fired and the ticket). A dry run writes nothing: the alert fires, no ticket is opened."""
    run = Run()

    def each(sample: Sample, fired: Alert | None) -> None:
        change = None
        if fired is not None:
            run.alerts.append(fired)
            if not dry_run:
                change = alert_open_change(alert=fired, actor=actor)
                run.changes.append(change)
        if report is not None:
            report(sample, fired, change)

    run.samples, _ = simulate(duration=duration, step=step, tick=tick, on_sample=each)
    return run
