"""The healing pipeline for one issue.

detected → diagnosing → root_cause_found | needs_input → fixing → verifying → deployed → resolved,
or mitigated (fixed for the affected user only), escalated or aborted. The moves, and how long each
stage may take, are healing.loop.stages; every move is a claim on the stage the caller expects, so a
redelivered or duplicate task finds the stage already taken and does nothing. A stage whose worker
died is resumed by the deadline sweep (healing.loop.sweep) through `issue_resume`.

Diagnosis: the pattern library first (Level 0, no LLM call), then Claude when configured. The fix
is a Change whose plan is split by reach (healing.loop.plan_split): steps for the affected user alone
run now, if the owner's promotion policy lets that risk run unattended; the flag step is what the
rollout turns on, canary first; steps that reach other users never run before verification, and
then only within the policy, otherwise they wait for the owner. When the Change aborts, every step
it applied is undone, newest first.
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from flags.models import ACTIVE_PHASES, Rollout
from flags.rollout.start import rollout_start
from healing import metrics
from healing.audit import AUTOMATIC, audit_record
from healing.changes.lifecycle import ChangeError, change_create, change_record_scorecard, change_transition
from healing.ingest.classify import Impact, severity_raise
from healing.loop import llm_diagnosis, verify
from healing.loop.learning import incident_fix_failed
from healing.loop.outcomes import (
    OPEN_FIX_STATUSES,
    change_abort,
    change_completed,
    diagnosis_of,
    fix_abort,
    issue_deployed,
    issue_escalate,
    issue_mitigated,
    level_of,
)
from healing.loop.patterns import active_library, pattern_candidates, pattern_match
from healing.loop.plan_split import FLAG_ACTIONS, PlanSplit, plan_split
from healing.loop.stages import issue_move, user_message
from healing.models import (
    Change,
    ChangeStatus,
    IncidentOutcome,
    Issue,
    IssueEvent,
    IssueType,
    Occurrence,
    Severity,
    Stage,
)
from healing.remediation import RemediationContext, change_steps_undo, remediation_plan_run
from healing.stream.fanout import issue_event_fanout
from kaizen_site.llm import LLMError
from notifications.owner_alert import EventType, owner_alert

logger = logging.getLogger("kaizen.pipeline")


def issue_process(*, issue_id: str) -> bool:
    """Record detection, then heal (P3 issues wait for the daily batch). True when it moved on."""
    issue = Issue.objects.select_related("project").filter(pk=issue_id).first()
    if issue is None:
        logger.warning("process_issue for an unknown issue", extra={"issue_id": issue_id})
        return False
    recorded = _detection_record(issue)
    if issue.stage != Stage.DETECTED or issue.severity == Severity.P3:
        return recorded
    return issue_heal(issue=issue) or recorded


def _detection_record(issue: Issue) -> bool:
    with transaction.atomic():
        Issue.objects.select_for_update().filter(pk=issue.pk).first()
        last_stage = issue.events.order_by("-created_at", "-id").values_list("stage", flat=True).first()
        if last_stage == issue.stage:
            return False
        event = IssueEvent.objects.create(
            issue=issue,
            stage=issue.stage,
            message=user_message(stage=issue.stage, issue=issue),
            detail=f"{issue.type} {issue.severity}: {issue.occurrence_count} occurrences, {issue.affected_users} users",
        )
        issue_event_fanout(event=event)
        if issue.stage == Stage.DETECTED and issue.type == IssueType.USER_REPORTED:
            # A person asked for help: the owner hears of it whatever its severity (which picks the channels).
            owner_alert(kind=EventType.HELP_REQUEST, severity=issue.severity, target=f"issue:{issue.pk}",
                        title=issue.title, body=_help_text(issue), dedupe_key=f"issue:{issue.pk}:help")  # fmt: skip
        elif issue.stage == Stage.DETECTED and issue.severity in (Severity.P0, Severity.P1):
            # Even when Kaizen goes on to fix it: the owner hears of every major problem.
            owner_alert(kind=EventType.ISSUE_DETECTED, severity=issue.severity, target=f"issue:{issue.pk}",
                        title=issue.title, body=f"{issue.affected_users} users, {issue.occurrence_count} reports.",
                        dedupe_key=f"issue:{issue.pk}:detected")  # fmt: skip
    return True


def _help_text(issue: Issue) -> str:
    """The user's own words, when the report carried them."""
    occurrence = _latest_occurrence(issue)
    description = (occurrence.payload.get("description") or "") if occurrence else ""
    return description[:500] or f"{issue.affected_users} users, {issue.occurrence_count} reports."


def p3_batch_process(*, limit: int = 500) -> int:
    """The daily run for P3 issues: minor problems are healed together, not one by one."""
    healed = 0
    for issue in Issue.objects.select_related("project").filter(severity=Severity.P3, stage=Stage.DETECTED)[:limit]:
        healed += issue_heal(issue=issue)
    return healed


def _latest_occurrence(issue: Issue) -> Occurrence | None:
    return issue.occurrences.order_by("-received_at", "-id").first()


def issue_heal(*, issue: Issue) -> bool:
    """Diagnose, fix, verify and deploy. Raises LLMError (transient) for the task to retry."""

    if not issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.DIAGNOSING):
        return False
    _regression_check(issue)
    occurrence = _latest_occurrence(issue)
    try:
        diagnosis = diagnose(issue=issue, occurrence=occurrence)
    except LLMError:
        issue_move(issue=issue, expected=Stage.DIAGNOSING, to=Stage.DETECTED, message="",
                   detail="LLM unavailable; retrying")  # fmt: skip
        raise
    if diagnosis.get("record"):
        # What the console shows as root cause and hypotheses: the timeline keeps only a line of it.
        Issue.objects.filter(pk=issue.pk).update(diagnosis=diagnosis["record"])
    if diagnosis["outcome"] == "needs_input":
        issue_move(issue=issue, expected=Stage.DIAGNOSING, to=Stage.NEEDS_INPUT, detail=diagnosis["reason"],
                   message=diagnosis["question"] or None)  # fmt: skip
        return True
    if diagnosis["outcome"] != "plan":
        issue_escalate(issue=issue, expected=Stage.DIAGNOSING, why=diagnosis["reason"])
        return True
    issue_move(issue=issue, expected=Stage.DIAGNOSING, to=Stage.ROOT_CAUSE_FOUND, detail=diagnosis["root_cause"],
               message=diagnosis["user_message"] or None)  # fmt: skip
    _guarded(change_fix, issue=issue, occurrence=occurrence, diagnosis=diagnosis)
    return True


def _guarded(work: Callable[..., None], *, issue: Issue, **kwargs: Any) -> None:
    """Run a stage's work on `issue`; whatever breaks, the issue must not sit half-fixed unseen."""
    try:
        work(issue=issue, **kwargs)
    except Exception as exc:  # noqa: BLE001 - escalated with the reason, and logged
        logger.exception("automatic fix failed", extra={"issue": str(issue.pk)})
        change = Change.objects.filter(issue=issue, status__in=OPEN_FIX_STATUSES).order_by("-number").first()
        why = f"The automatic fix failed: {type(exc).__name__}: {exc}"
        if change is not None:
            change_abort(change=change, why=why)
        issue_escalate(issue=issue, expected=BUSY, why=why)


# Stages in which the pipeline's own work is under way on a Change.
BUSY = (Stage.ROOT_CAUSE_FOUND, Stage.FIXING, Stage.VERIFYING)


def _regression_check(issue: Issue) -> None:
    """Back after a Change fixed it for everyone: that fix failed in production, which is impact
    (one severity level) and a failure of its pattern. Once per fix (its incident records it)."""

    fixed = Change.objects.filter(
        issue=issue, status=ChangeStatus.COMPLETE, incident__outcome=IncidentOutcome.FIXED
    ).order_by("-number").first()  # fmt: skip
    if fixed is None:
        return
    incident_fix_failed(change=fixed)
    raised = severity_raise(issue_id=issue.pk, impact=Impact.FIX_FAILED_IN_PRODUCTION,
                            why=f"It came back after {fixed.key} fixed it for everyone.")  # fmt: skip
    issue.severity = raised or issue.severity


def diagnose(*, issue: Issue, occurrence: Occurrence | None) -> dict[str, Any]:
    """Level 0 (a known pattern) or Level 1 (the LLM). The answer is plain data for the next stages."""

    match = pattern_match(issue=issue, occurrence=occurrence)
    if match is not None:
        metrics.PATTERN_LOOKUPS.labels(outcome="hit").inc()
        root_cause = f"Known problem: {match.pattern.name} (confidence {match.confidence:.2f})"
        return {
            "outcome": "plan",
            "level": "pattern",
            "plan": match.plan,
            "pattern_id": match.pattern.pk,
            "root_cause": root_cause,
            "user_message": "",
            "record": diagnosis_record(
                level="pattern", root_cause=root_cause, confidence=match.confidence, pattern_id=match.pattern.pk
            ),  # fmt: skip
        }
    metrics.PATTERN_LOOKUPS.labels(outcome="miss").inc()
    candidates = [
        {"pattern_id": c.pattern_id, "confidence": round(c.confidence, 3)}
        for c in pattern_candidates(issue=issue, occurrence=occurrence, library=active_library())[:3]
    ]
    result = llm_diagnosis.issue_diagnose(issue=issue, candidates=candidates)
    record = _llm_record(result)
    if result.ok and result.diagnosis.remediation_plan:
        found = result.diagnosis
        return {
            "outcome": "plan",
            "level": "llm",
            "plan": [step.model_dump() for step in found.remediation_plan],
            "pattern_id": None,
            "root_cause": found.root_cause,
            "user_message": found.user_message,
            "record": record,
        }
    if result.ok:  # a diagnosis without a plan this loop can run (e.g. a code patch only)
        return {"outcome": "escalate", "reason": f"No automatic fix: {result.diagnosis.root_cause}", "record": record}
    return {"outcome": result.fallback or "escalate", "reason": result.reason, "question": result.question,
            "record": record}  # fmt: skip


def diagnosis_record(
    *,
    level: str,
    root_cause: str,
    confidence: float | None = None,
    hypotheses: list[dict[str, Any]] | None = None,
    code_patch: dict[str, Any] | None = None,
    pattern_id: int | None = None,
    fallback: str = "",
    reason: str = "",
    calls: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The diagnosis as Issue.diagnosis keeps it for the console (plain JSON)."""
    return {
        "level": level, "root_cause": root_cause, "confidence": confidence, "hypotheses": hypotheses or [],
        "code_patch": code_patch, "pattern_id": pattern_id, "fallback": fallback, "reason": reason,
        "llm_calls": list(calls), "at": timezone.now().isoformat(),
    }  # fmt: skip


def _llm_record(result: llm_diagnosis.DiagnosisResult) -> dict[str, Any] | None:
    if result.ok:
        found = result.diagnosis
        return diagnosis_record(
            level="llm", root_cause=found.root_cause, confidence=found.confidence,
            hypotheses=[h.model_dump() for h in found.hypotheses],
            code_patch=found.code_patch.model_dump(mode="json") if found.code_patch else None, calls=result.calls,
        )  # fmt: skip
    if result.fallback == llm_diagnosis.OFF:
        return None  # nothing was diagnosed; the escalation says why
    return diagnosis_record(level="llm", root_cause="", fallback=result.fallback, reason=result.reason,
                            calls=result.calls)  # fmt: skip


def _flag_of(plan: list[Mapping[str, Any]]) -> str:
    return next(
        (str(s["params"]["flag"]) for s in plan if s["action"] in FLAG_ACTIONS and "flag" in s.get("params", {})), ""
    )


def change_fix(*, issue: Issue, occurrence: Occurrence | None, diagnosis: Mapping[str, Any]) -> None:
    """Open the Change (the diagnosis recorded on it, so a resumed stage knows it), then fix."""

    plan = list(diagnosis["plan"])
    change = change_create(
        title=f"Fix: {issue.title}"[:255],
        severity=issue.severity,
        issue=issue,
        plan=plan,
        flag_key=_flag_of(plan),
        objective=diagnosis["root_cause"],
        success_criteria="The failing request succeeds 10/10 in the sandbox (5 as the user, 5 as a generic account).",
        abort_criteria="Any replay fails, the issue occurs again during verification or rollout, or errors rise.",
        rollback_plan="Kill the flag; undo the remediation steps, newest first.",
        actor=AUTOMATIC,
        why=f"{diagnosis['level']} diagnosis",
    )
    change = change_record_scorecard(
        change=change,
        actor=AUTOMATIC,
        diagnosis={"level": diagnosis["level"], "pattern_id": diagnosis["pattern_id"],
                   "user_id": occurrence.user_id if occurrence else ""},
    )  # fmt: skip
    for to in (ChangeStatus.PLANNED, ChangeStatus.IN_PROGRESS):
        change = change_transition(change=change, to=to, actor=AUTOMATIC, why="healing pipeline")
    if issue_move(issue=issue, expected=Stage.ROOT_CAUSE_FOUND, to=Stage.FIXING, detail=change.key):
        change_apply(issue=issue, change=change)


def _context(issue: Issue, change: Change) -> RemediationContext:
    return RemediationContext(issue=issue, change=change, user_id=diagnosis_of(change)["user_id"])


def change_apply(*, issue: Issue, change: Change) -> None:
    """The fixing stage: run the steps for the affected user, then verify. Nothing that reaches
    other users runs here. Resumed after a crash, it first undoes what the dead run applied, so
    the stage runs again from a clean slate rather than half on top of itself."""
    split = plan_split(change=change)
    change_steps_undo(change=change, actor=AUTOMATIC, why="fixing again from the start")
    if split.direct:
        report = remediation_plan_run(plan=[e.raw for e in split.direct], context=_context(issue, change),
                                      actor=AUTOMATIC)  # fmt: skip
        if not report.ok:
            fix_abort(issue=issue, change=change, expected=Stage.FIXING, why=report.summary)
            return
    if issue_move(issue=issue, expected=Stage.FIXING, to=Stage.VERIFYING, detail=change.key):
        change_verify(issue=issue, change=change, split=split)


def change_verify(*, issue: Issue, change: Change, split: PlanSplit | None = None) -> None:
    """The verifying stage: replay in the sandbox, then deploy, hold for the owner, or abort."""

    split = split or plan_split(change=change)
    diagnosis = diagnosis_of(change)
    occurrence = _latest_occurrence(issue)
    # Nobody has the fix while it is verified, so other users meeting the bug meanwhile say nothing
    # about it: only a report the replays themselves caused does, and the generic account the
    # replays run as is no real user.
    caused = Occurrence.objects.filter(issue=issue, user_id=verify.GENERIC_ACCOUNT)
    verdict = verify.change_verify(
        replay=verify.replay_of(occurrence.payload) if occurrence else None,
        project_id=issue.project_id,
        affected_user=diagnosis["user_id"],
        flag_key=change.flag_key or None,
        occurrences_before=caused.count(),
        occurrences_now=caused.count,
    )
    change = change_record_scorecard(
        change=change,
        actor=AUTOMATIC,
        verification={
            "passed": verdict.passed,
            "summary": verdict.summary(),
            "probes": [p.__dict__ for p in verdict.probes],
            "level": diagnosis["level"],
            "pattern_id": diagnosis["pattern_id"],
        },
    )
    if not verdict.passed:
        fix_abort(issue=issue, change=change, expected=Stage.VERIFYING, why=verdict.summary())
        return
    change = change_transition(change=change, to=ChangeStatus.IN_REVIEW, actor=AUTOMATIC, why=verdict.summary())
    if split.held:
        _hold(issue=issue, change=change, split=split)
        return
    change_deploy(issue=issue, change=change, split=split, expected=Stage.VERIFYING)


def _hold(*, issue: Issue, change: Change, split: PlanSplit) -> None:
    """Steps the policy does not let run unattended wait for the owner's approval (the console's
    "approve held steps"); the issue needs a person meanwhile. What ran for the user stays: it
    passed verification."""

    held = [{"step": e.number, "action": e.raw["action"], "reasons": list(e.reasons)} for e in split.held]
    change_record_scorecard(change=change, actor=AUTOMATIC, held=held)
    why = "Waiting for the owner's approval: " + "; ".join(
        f"step {h['step']} ({h['action']}): {', '.join(h['reasons'])}" for h in held
    )
    issue_escalate(issue=issue, expected=Stage.VERIFYING, why=why)


def change_held_approve(*, change: Change, actor: str) -> Change:
    """The owner approves the steps the policy held: they run now, and the fix goes on as if the
    policy had allowed them (audited as the owner's decision). Claimed under the Change's lock, so
    a second click runs nothing. Returns the Change as it ends up (aborted if a step failed)."""

    with transaction.atomic():
        current = Change.objects.select_for_update(of=("self",)).select_related("issue__project").get(pk=change.pk)
        if current.status != ChangeStatus.IN_REVIEW or not current.scorecard.get("held") or current.issue is None:
            raise ChangeError(f"{current.key} has no steps waiting for approval.")
        held = current.scorecard["held"]
        current = change_record_scorecard(change=current, actor=actor, held=[])
        audit_record(actor=actor, action="change.approve_held", target=f"change:{current.key}", detail={"steps": held})
    split = plan_split(change=current, approved=True)
    _guarded(change_deploy, issue=current.issue, change=current, split=split, expected=Stage.ESCALATED, actor=actor)
    return Change.objects.get(pk=current.pk)


def change_deploy(*, issue: Issue, change: Change, split: PlanSplit, expected: str, actor: str = AUTOMATIC) -> None:
    """A verified Change reaches users: the steps that reach others (within the policy or
    approved), then the rollout of its flag, or the end of the fix when it has none."""

    if split.wide:
        report = remediation_plan_run(plan=[e.raw for e in split.wide], context=_context(issue, change), actor=actor)
        if not report.ok:
            fix_abort(issue=issue, change=change, expected=expected, why=report.summary)
            return
    level, user_id = diagnosis_of(change)["level"], diagnosis_of(change)["user_id"]
    running = _active_rollout(issue=issue, flag_key=change.flag_key)
    if running is not None:
        # The same fix is already rolling out for another issue: give it to this user now and let
        # that rollout take it to everyone (one flag, one rollout).
        remediation_plan_run(plan=[e.raw for e in split.rollout], context=_context(issue, change), actor=actor)
        change = change_record_scorecard(
            change=change, actor=actor, metrics_after={"rides_rollout_of": running.change.key}
        )
        change = change_transition(
            change=change, to=ChangeStatus.CANARY, actor=actor, why=f"rides {running.change.key}"
        )
        issue_deployed(issue=issue, change=change, level=level, expected=expected)
    elif change.flag_key:
        rollout_start(change=change, actor=actor, affected_user_id=user_id, **rollout_durations())
        issue_deployed(issue=issue, change=change, level=level, expected=expected)
    else:
        # Nothing to roll out: what ran is in place for everyone it concerns.
        for to in (ChangeStatus.CANARY, ChangeStatus.COMPLETE):
            change = change_transition(change=change, to=to, actor=actor, why="verified; nothing to roll out")
        if split.per_user_only:
            issue_mitigated(issue=issue, change=change, expected=expected)
        else:
            issue_deployed(issue=issue, change=change, level=level, expected=expected)
            change_completed(change_id=change.pk)


def change_continue(*, issue: Issue, change: Change, stage: str) -> None:
    """Take a Change on from the status it was left in when the worker running `stage` died:
    each status's next step, claimed like the first time, so nothing runs twice."""
    status = Change.objects.filter(pk=change.pk).values_list("status", flat=True).get()
    change.status = status
    if status == ChangeStatus.IN_PROGRESS and stage == Stage.FIXING:
        _guarded(change_apply, issue=issue, change=change)
    elif status == ChangeStatus.IN_PROGRESS and stage == Stage.VERIFYING:
        _guarded(change_verify, issue=issue, change=change)
    elif status == ChangeStatus.IN_REVIEW and stage == Stage.VERIFYING:
        split = plan_split(change=change)
        work = _hold if split.held else change_deploy
        extra = {} if split.held else {"expected": Stage.VERIFYING}
        _guarded(work, issue=issue, change=change, split=split, **extra)
    elif status == ChangeStatus.CANARY:  # the rollout started (or this one rides another)
        issue_deployed(issue=issue, change=change, level=level_of(change), expected=stage)
    elif status == ChangeStatus.COMPLETE and stage == Stage.VERIFYING:
        if plan_split(change=change).per_user_only:
            issue_mitigated(issue=issue, change=change, expected=stage)
        else:
            issue_deployed(issue=issue, change=change, level=level_of(change), expected=stage)
            change_completed(change_id=change.pk)
    elif status == ChangeStatus.COMPLETE:
        change_completed(change_id=change.pk)
    elif status == ChangeStatus.ABORTED:
        change_steps_undo(change=change, actor=AUTOMATIC, why="aborted while its worker was gone")
        issue_escalate(issue=issue, expected=stage, why=f"{change.key} was aborted", to=Stage.ABORTED, change=change)
    else:
        issue_escalate(issue=issue, expected=stage, why=f"{change.key} is {status}, which {stage} cannot take on")


def _active_rollout(*, issue: Issue, flag_key: str) -> Rollout | None:
    if not flag_key:
        return None
    return (
        Rollout.objects.select_related("change")
        .filter(flag__project_id=issue.project_id, flag__key=flag_key, phase__in=ACTIVE_PHASES)
        .first()
    )


def rollout_durations() -> dict[str, int]:
    return {
        "canary_seconds": settings.KAIZEN_ROLLOUT_CANARY_SECONDS,
        "partial_seconds": settings.KAIZEN_ROLLOUT_PARTIAL_SECONDS,
        "full_seconds": settings.KAIZEN_ROLLOUT_FULL_SECONDS,
    }
