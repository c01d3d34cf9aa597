"""The incident page's buttons. Each is one call into the loop's own functions (which move the
issue through `issue_move`, the Change through its lifecycle, and write the audit log), with the
outcome shown as a message. A request that no longer applies (the issue or change moved since
the page was read) changes nothing and says why.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages

from flags.models import ACTIVE_PHASES, Rollout
from flags.rollout.engine import RolloutError, rollout_rollback
from healing.changes.lifecycle import ChangeError
from healing.changes.patch_executor import change_approve_patch, change_reject_patch
from healing.loop import triage
from healing.models import Change, Issue, PatchState
from kaizen_site.console import request_actor


@dataclass(frozen=True)
class Action:
    label: str
    run: Callable[..., str]  # (actor, issue, why) → the success message; raises ActionRefused
    needs_why: bool = False
    permission: str = "healing.change_issue"


class ActionRefused(Exception):
    pass


def _change_with_patch(issue: Issue) -> Change:
    change = Change.objects.filter(issue=issue).exclude(patch_diff="").order_by("-number").first()
    if change is None:
        raise ActionRefused("This incident's changes carry no code patch.")
    return change


def _retry(*, actor: str, issue: Issue, why: str) -> str:
    try:
        triage.issue_diagnosis_retry(issue=issue, actor=actor)
    except triage.TriageError as exc:
        raise ActionRefused(str(exc)) from exc
    return "Sent back to be diagnosed again." + (" (A P3 waits for the daily batch.)" if issue.severity == "P3" else "")


def _approve(*, actor: str, issue: Issue, why: str) -> str:
    try:
        change = change_approve_patch(change=_change_with_patch(issue), actor=actor)
    except ChangeError as exc:
        raise ActionRefused(str(exc)) from exc
    if change.patch_state == PatchState.FAILED:
        raise ActionRefused(f"{change.key}: patch approved, but sending it failed: {change.patch_error}")
    if change.patch_state == PatchState.SUBMITTED:
        return f"{change.key}: patch approved and sent, build {change.patch_build_id}."
    return f"{change.key}: patch approved. Apply it, then move the change to canary."


def _reject(*, actor: str, issue: Issue, why: str) -> str:
    try:
        change = change_reject_patch(change=_change_with_patch(issue), actor=actor, why=why)
    except ChangeError as exc:
        raise ActionRefused(str(exc)) from exc
    return f"{change.key}: patch rejected and sent back for rework."


def _rollback(*, actor: str, issue: Issue, why: str) -> str:
    rollout = (
        Rollout.objects.select_related("change", "flag")
        .filter(change__issue=issue, phase__in=ACTIVE_PHASES)
        .order_by("-created_at")
        .first()
    )
    if rollout is None:
        raise ActionRefused("No rollout of this incident's fix is in progress: nothing to roll back.")
    try:
        rollout_rollback(rollout=rollout, why=why, actor=actor)
    except RolloutError as exc:
        raise ActionRefused(str(exc)) from exc
    return f"{rollout.change.key}: rolled back, flag {rollout.flag.key} killed."


def _not_a_problem(*, actor: str, issue: Issue, why: str) -> str:
    if triage.issue_not_a_problem(issue=issue, actor=actor, why=why):
        return "Closed as not a problem (counted as a false positive)."
    return "Counted as a false positive; the issue is mid-fix, so it stays open until that stops."


ACTIONS: dict[str, Action] = {
    "retry-diagnosis": Action("Retry diagnosis", _retry),
    "approve-patch": Action("Approve patch", _approve, permission="healing.change_change"),
    "reject-patch": Action("Reject patch", _reject, needs_why=True, permission="healing.change_change"),
    "rollback": Action("Roll back", _rollback, needs_why=True, permission="flags.change_flag"),
    "not-a-problem": Action("Not a problem", _not_a_problem),
}


def actions_offered(*, issue: Issue, fix) -> dict[str, Action]:
    """The buttons that can do something now (the page's `fix` is healing.console.incident.Fix);
    a stale page's button still gets a clear refusal from the action itself."""
    rolling = fix is not None and fix.rollout is not None and fix.rollout.phase in ACTIVE_PHASES
    offered = {
        "retry-diagnosis": issue.stage in triage.RETRYABLE,
        "approve-patch": fix is not None and fix.patch_waiting,
        "reject-patch": fix is not None and fix.patch_waiting,
        "rollback": rolling,
        "not-a-problem": issue.stage != "resolved",
    }
    return {name: action for name, action in ACTIONS.items() if offered[name]}


def incident_act(request, *, issue: Issue, action: str) -> bool:
    """Run `action` for the console user on `issue`; True if it was carried out."""
    spec = ACTIONS[action]
    if not request.user.has_perm(spec.permission):
        messages.error(request, f"{spec.label}: you do not have the permission ({spec.permission}).")
        return False
    why = request.POST.get("why", "").strip()[:2000]
    if spec.needs_why and not why:
        messages.error(request, f"{spec.label}: say why (it is kept in the log).")
        return False
    try:
        done = spec.run(actor=request_actor(request), issue=issue, why=why)
    except ActionRefused as exc:
        messages.error(request, f"{spec.label}: {exc}")
        return False
    messages.success(request, done)
    return True
