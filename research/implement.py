"""Acting on a proposal through the project's ticket services: "Implement now" opens a Change
(KAIZ-…) with the proposal's plan, criteria and a 10 % canary flag and hands it to the executor;
a completed Change produces the What's New entry. The ticket lifecycle is healing's; nothing
here moves a Change except through `change_transition`.
"""

import logging
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

# The ticket services this app uses; kept to these lines so they can be repointed in one place.
from flags.models import Flag
from flags.services import flag_create
from healing.audit import audit_record
from healing.changes.lifecycle import PatchSpec, change_create, change_record_scorecard, change_transition
from healing.models import Change, ChangeStatus, Project

from .models import Proposal, ProposalStatus, WhatsNew
from .schedule import owner_today

logger = logging.getLogger(__name__)

CANARY_PERCENT = 10
CHANGE_SEVERITY = "P3"  # an enhancement is never urgent: it goes through the routine queues


class ProposalError(Exception):
    """The proposal cannot take this action in its current state; the message says why."""


def _flag_key(proposal: Proposal) -> str:
    return f"enh-{proposal.pk}-{slugify(proposal.title)[:60]}".rstrip("-")


def _plan_markdown(proposal: Proposal) -> str:
    files = "\n".join(f"- `{path}`" for path in proposal.files) or "- (to be found by the implementer)"
    return (
        f"## What\n{proposal.what}\n\n## Why\n{proposal.why}\n\n## How\n{proposal.how}\n\n## Files\n{files}\n\n"
        f"## Risk\n{proposal.risk_notes or 'see scores'}\n\n"
        f"Scores: impact {proposal.impact}, effort {proposal.effort}, risk {proposal.risk}, edge {proposal.edge}, "
        f"revenue {proposal.revenue} → {proposal.score:g}. Estimated time: {proposal.time_estimate or 'n/a'}."
    )


def _claim(*, proposal: Proposal, expected: tuple[str, ...], to: str, actor: str, **fields) -> None:
    # Conditional UPDATE: two clicks (or a click and the scheduler) act once.
    now = timezone.now()
    moved = Proposal.objects.filter(pk=proposal.pk, status__in=expected).update(
        status=to, decided_by=actor, decided_at=now, **fields
    )
    if not moved:
        current = Proposal.objects.filter(pk=proposal.pk).values_list("status", flat=True).first()
        raise ProposalError(f"Proposal {proposal.pk} is {current}: it cannot go to {to}.")
    proposal.status, proposal.decided_by, proposal.decided_at = to, actor, now
    for name, value in fields.items():
        setattr(proposal, name, value)
    audit_record(
        actor=actor,
        action=f"proposal.{to}",
        target=f"proposal:{proposal.pk}",
        detail={"title": proposal.title, **{k: str(v) for k, v in fields.items()}},
    )


@transaction.atomic
def proposal_implement(*, proposal: Proposal, actor: str) -> Change:
    _claim(
        proposal=proposal, expected=(ProposalStatus.PROPOSED, ProposalStatus.SCHEDULED),
        to=ProposalStatus.IMPLEMENTING, actor=actor,
    )  # fmt: skip
    flag_key = _flag_key(proposal)
    change = change_create(
        title=f"Enhancement: {proposal.title}"[:255],
        severity=CHANGE_SEVERITY,
        actor=actor,
        objective=_plan_markdown(proposal),
        patch=PatchSpec(summary=_plan_markdown(proposal), diff=""),
        success_criteria=proposal.success_criteria,
        abort_criteria=proposal.abort_criteria,
        rollback_plan=f"Turn off the flag {flag_key}; nothing else changes until it is on.",
        flag_key=flag_key,
        why=f"Implement now on research proposal {proposal.pk} ({proposal.category}, score {proposal.score:g})",
    )
    project = Project.objects.order_by("pk").first()
    if project is not None and not Flag.objects.filter(project=project, key=flag_key).exists():
        # Off until the executor's build lands; then the rollout engine takes it canary → 10 % → 100 %.
        flag_create(
            project=project, key=flag_key, actor=actor, description=proposal.title,
            rollout_percentage=CANARY_PERCENT, why=f"Enhancement {change.key}",
        )  # fmt: skip
    change_record_scorecard(
        change=change,
        actor=actor,
        diagnosis={"source": "research", "proposal": proposal.pk, "rollout": {"canary_percent": CANARY_PERCENT}},
    )
    change_transition(change=change, to=ChangeStatus.PLANNED, actor=actor, why="Owner chose Implement now")
    change_transition(change=change, to=ChangeStatus.IN_PROGRESS, actor=actor, why="Handed to the executor")
    Proposal.objects.filter(pk=proposal.pk).update(change=change)
    proposal.change = change
    return change


def proposal_schedule(*, proposal: Proposal, actor: str, on: date) -> Proposal:
    if on <= owner_today():
        raise ProposalError("Schedule for a later day; use Implement now for today.")
    with transaction.atomic():
        _claim(proposal=proposal, expected=(ProposalStatus.PROPOSED,), to=ProposalStatus.SCHEDULED, actor=actor,
               scheduled_for=on)  # fmt: skip
    return proposal


def proposal_dismiss(*, proposal: Proposal, actor: str, reason: str) -> Proposal:
    reason = reason.strip()
    if not reason:
        raise ProposalError("Say why it is dismissed: the reason keeps the idea from coming back unexplained.")
    with transaction.atomic():
        _claim(
            proposal=proposal, expected=(ProposalStatus.PROPOSED, ProposalStatus.SCHEDULED),
            to=ProposalStatus.DISMISSED, actor=actor, dismiss_reason=reason[:2000],
        )  # fmt: skip
    return proposal


def scheduled_due(*, today: date, actor: str) -> list[Change]:
    """Implement the scheduled proposals whose day has come."""
    changes = []
    for proposal in Proposal.objects.filter(status=ProposalStatus.SCHEDULED, scheduled_for__lte=today):
        try:
            changes.append(proposal_implement(proposal=proposal, actor=actor))
        except ProposalError:
            continue  # acted on by someone else meanwhile
    return changes


def change_finished(*, change_id: int, status: str, when: datetime | None = None) -> WhatsNew | None:
    """A Change from a proposal completed (What's New + changelog line) or aborted (abandoned)."""
    proposal = Proposal.objects.filter(change_id=change_id).first()
    if proposal is None:
        return None
    if status == ChangeStatus.ABORTED:
        Proposal.objects.filter(pk=proposal.pk, status=ProposalStatus.IMPLEMENTING).update(
            status=ProposalStatus.ABANDONED
        )
        return None
    if status != ChangeStatus.COMPLETE:
        return None
    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.SHIPPED)
    entry, _ = WhatsNew.objects.get_or_create(
        proposal=proposal,
        defaults={
            "title": proposal.title,
            "body": proposal.what,
            "changelog_line": f"{(when or timezone.now()):%Y-%m-%d} — {proposal.title}"[:500],
            "published_at": when or timezone.now(),
        },
    )
    return entry


def finished_changes_sweep() -> int:
    """The daily job's safety net for a completion whose signal was missed (a crash after commit)."""
    done = 0
    rows = Proposal.objects.filter(
        status=ProposalStatus.IMPLEMENTING, change__status__in=(ChangeStatus.COMPLETE, ChangeStatus.ABORTED)
    ).values_list("change_id", "change__status")
    for change_id, status in rows:
        done += change_finished(change_id=change_id, status=status) is not None or status == ChangeStatus.ABORTED
    return done
