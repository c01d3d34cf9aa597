"""How a rollout's current phase is doing: read-only checks the rollout engine (flags.rollout.engine)
runs on every step and every sweep.

Reports carry a user id but the product sends no request counts, so a true error rate is not
measurable. What is measured, for the users the flag is on for:
- new occurrences of the watched issue (the one the Change fixes) since the phase began: the fix
  is not working. In the full phase everyone is exposed, so the issue's occurrence counter (never
  trimmed by retention, unlike the rows) counts too;
- from the partial phase on, ERROR reports per minute from exposed users, scaled up by the
  exposed share (bucketing is uniform, so 10 % of users should send ~10 % of the errors) and
  compared with the project's rate in the hour before the rollout. One canary user gives no rate.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from flags.evaluate import bucket
from flags.models import Rollout, RolloutPhase
from healing.models import Issue, IssueType, Occurrence

P = RolloutPhase
BASELINE_WINDOW = timedelta(hours=1)
# Fewer ERROR reports than this in a phase is noise, whatever the rate says (one error in the
# first minute of a 10 % phase would otherwise read as ten times the baseline).
MIN_ERRORS_FOR_RATE = 5
# Occurrence rows read per check: bucketing happens in Python (MurmurHash is not in the database).
ROWS_SCANNED = 20_000
# A flag change reaches every process within flags.evaluate.propagation_seconds() (0.5 s with
# Redis, 1.25 s without): a report sent that soon after a phase began, or after a user was reached,
# may have been answered without the fix, and must not roll the fix back. The rest is the report's
# own way here.
PROPAGATION = timedelta(seconds=2)


@dataclass
class Health:
    degraded: bool = False
    reasons: list[str] = field(default_factory=list)
    watched_new: int = 0  # new occurrences of the watched issue among exposed users, this phase
    exposed_errors: int | None = None  # ERROR reports from exposed users, this phase
    error_rate: float | None = None  # per minute, scaled to all users
    baseline: float = 0.0
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {
            "watched_new": self.watched_new,
            "exposed_errors": self.exposed_errors,
            "error_rate": self.error_rate,
            "baseline_error_rate": self.baseline,
            "degraded": self.degraded,
            "reasons": self.reasons,
        }

    def summary(self) -> str:
        rate = "not measured" if self.error_rate is None else f"{self.error_rate:.2f}/min"
        parts = [f"{self.watched_new} new watched occurrence(s)", f"error rate {rate} (baseline {self.baseline:.2f})"]
        return "; ".join([*parts, *self.reasons, *self.notes])


def phase_exposure(rollout: Rollout, phase: str) -> int:
    """The percentage of users the flag is on for in `phase` (the canary's one user counts 0)."""
    return {P.PARTIAL: rollout.partial_percentage, P.FULL: 100, P.DONE: 100}.get(phase, 0)


def exposed_user(rollout: Rollout, phase: str):
    """Who the flag is on for in `phase`, as a test on a user id (an opt-out override is ignored:
    rare, and it only makes the check stricter)."""
    affected, group, share = rollout.affected_user_id, rollout.flag.bucket_group, rollout.partial_percentage
    reached = rollout.reached_users
    if phase == P.CANARY:
        return lambda user_id: user_id == affected or user_id in reached
    if phase == P.PARTIAL:
        return lambda user_id: (
            user_id == affected
            or user_id in reached
            or (bool(user_id) and bucket(group_id=group, user_id=user_id) <= share)
        )
    return lambda user_id: True


def _exposed_report(rollout: Rollout, phase: str):
    """Whether a report came from a user who had the fix when they sent it: a user reached during
    the phase had the bug until then, and the report that reached them must not count against it."""
    exposed = exposed_user(rollout, phase)
    since = {user_id: datetime.fromisoformat(at) for user_id, at in rollout.reached_users.items()}
    return lambda user_id, received_at: (
        exposed(user_id) and (user_id not in since or received_at > since[user_id] + PROPAGATION)
    )


def error_rate_before(*, project_id: int, before: datetime) -> float:
    """The project's ERROR reports per minute in the hour before `before`."""
    count = Occurrence.objects.filter(
        issue__project_id=project_id,
        issue__type=IssueType.ERROR,
        received_at__gte=before - BASELINE_WINDOW,
        received_at__lt=before,
    ).count()
    return count / (BASELINE_WINDOW.total_seconds() / 60)


def rollout_health(*, rollout: Rollout, now: datetime | None = None) -> Health:
    """What the current phase's window shows; reads only."""
    now = now or timezone.now()
    since, phase = rollout.phase_started_at, rollout.phase
    exposed = _exposed_report(rollout, phase)
    health = Health(baseline=rollout.baseline_error_rate)
    window = Q(received_at__gte=since + PROPAGATION, received_at__lte=now)
    if rollout.issue_id:
        reports = Occurrence.objects.filter(window, issue_id=rollout.issue_id).values_list("user_id", "received_at")
        health.watched_new = sum(1 for report in reports[:ROWS_SCANNED] if exposed(*report))
        if phase == P.FULL:
            count = Issue.objects.filter(pk=rollout.issue_id).values_list("occurrence_count", flat=True).first() or 0
            health.watched_new = max(health.watched_new, count - rollout.watched_count_at_phase_start)
        if health.watched_new > rollout.watched_allowance:
            health.reasons.append(
                f"{health.watched_new} new occurrence(s) of the watched issue among exposed users "
                f"(allowed {rollout.watched_allowance})"
            )
    else:
        health.notes.append("no watched issue")
    if phase == P.CANARY:
        health.notes.append("one canary user gives no error rate: the watched issue decides")
    else:
        share = phase_exposure(rollout, phase) / 100
        reports = Occurrence.objects.filter(
            window, issue__project_id=rollout.flag.project_id, issue__type=IssueType.ERROR
        ).values_list("user_id", "received_at")
        health.exposed_errors = sum(1 for report in reports[:ROWS_SCANNED] if exposed(*report))
        minutes = max((now - since).total_seconds() / 60, 1.0)
        health.error_rate = health.exposed_errors / minutes / share
        limit = rollout.error_rate_threshold * health.baseline
        if health.exposed_errors >= MIN_ERRORS_FOR_RATE and health.error_rate > limit:
            health.reasons.append(
                f"exposed users' error rate {health.error_rate:.2f}/min is over {rollout.error_rate_threshold:g}× "
                f"the baseline {health.baseline:.2f}/min"
            )
    health.degraded = bool(health.reasons)
    return health
