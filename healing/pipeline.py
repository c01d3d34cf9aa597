"""The healing pipeline for one issue.

detected → diagnosing → root_cause_found | needs_input → fixing → verifying → deployed → resolved,
or escalated / aborted. Every stage is claimed with a conditional UPDATE on the issue's stage, so a
redelivered or duplicate task finds the stage already taken and does nothing; every transition is
an IssueEvent (what the affected user is told, and the internal detail for the owner).

Diagnosis: the pattern library first (Level 0, no LLM call), then Claude when configured. The fix
is a Change: steps that are not behind a flag (owner webhooks, cache clears...) run now for the
affected user; a flag step is what the rollout turns on, canary first (the affected user), after
verification replayed the failing request 5 + 5 times with the flag forced on in the sandbox.
"""

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Histogram

from . import metrics
from .audit import AUTOMATIC, audit_record
from .models import Issue, IssueEvent, Occurrence, Severity, Stage

logger = logging.getLogger("kaizen.pipeline")

# What the affected user's popup says at each stage.
USER_MESSAGES = {
    Stage.DETECTED: "We noticed a problem and are looking into it.",
    Stage.DIAGNOSING: "We're working out what went wrong.",
    Stage.ROOT_CAUSE_FOUND: "We found the cause and are preparing a fix.",
    Stage.NEEDS_INPUT: "We need a little more information from you to fix this.",
    Stage.FIXING: "Applying a fix.",
    Stage.VERIFYING: "Checking that the fix works.",
    Stage.DEPLOYED: "Fixed! Please try again.",
    Stage.RESOLVED: "Fixed for everyone.",
    Stage.ESCALATED: "This one needs a person: the team has been alerted.",
    Stage.ABORTED: "The automatic fix didn't hold; the team has been alerted.",
}
# Steps the rollout applies (through the flag), not the pipeline.
FLAG_ACTIONS = {"flag_enable_for_user"}

MTTR = Histogram(
    "kaizen_mttr_seconds",
    "Time from detection to fixed: for the affected user (canary) and for everyone (full rollout).",
    ["scope", "level"],
    buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)


def _move(
    issue: Issue, *, expected: str | tuple[str, ...], to: str, detail: str = "", message: str | None = None
) -> bool:
    """Claim a stage: only one caller moves the issue from `expected`; the event is recorded with it."""
    expected = (expected,) if isinstance(expected, str) else expected
    with transaction.atomic():
        moved = Issue.objects.filter(pk=issue.pk, stage__in=expected).update(
            stage=to, resolved_at=timezone.now() if to == Stage.RESOLVED else None
        )
        if moved:
            IssueEvent.objects.create(
                issue=issue, stage=to, message=USER_MESSAGES.get(to, "") if message is None else message, detail=detail
            )
    if moved:
        issue.stage = to
    return bool(moved)


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
        IssueEvent.objects.create(
            issue=issue,
            stage=issue.stage,
            message=USER_MESSAGES.get(issue.stage, ""),
            detail=f"{issue.type} {issue.severity}: {issue.occurrence_count} occurrences, {issue.affected_users} users",
        )
    return True


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
    from kaizen_site.llm import LLMError

    if not _move(issue, expected=Stage.DETECTED, to=Stage.DIAGNOSING):
        return False
    occurrence = _latest_occurrence(issue)
    try:
        diagnosis = diagnose(issue=issue, occurrence=occurrence)
    except LLMError:
        _move(issue, expected=Stage.DIAGNOSING, to=Stage.DETECTED, message="", detail="LLM unavailable; retrying")
        raise
    if diagnosis["outcome"] == "needs_input":
        _move(issue, expected=Stage.DIAGNOSING, to=Stage.NEEDS_INPUT, detail=diagnosis["reason"],
              message=diagnosis["question"] or USER_MESSAGES[Stage.NEEDS_INPUT])  # fmt: skip
        return True
    if diagnosis["outcome"] != "plan":
        issue_escalate(issue=issue, expected=Stage.DIAGNOSING, why=diagnosis["reason"])
        return True
    _move(issue, expected=Stage.DIAGNOSING, to=Stage.ROOT_CAUSE_FOUND, detail=diagnosis["root_cause"],
          message=diagnosis["user_message"] or USER_MESSAGES[Stage.ROOT_CAUSE_FOUND])  # fmt: skip
    try:
        change_fix(issue=issue, occurrence=occurrence, diagnosis=diagnosis)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the issue must not sit half-fixed unseen
        logger.exception("automatic fix failed", extra={"issue": str(issue.pk)})
        busy = (Stage.ROOT_CAUSE_FOUND, Stage.FIXING, Stage.VERIFYING)
        issue_escalate(issue=issue, expected=busy, why=f"The automatic fix failed: {type(exc).__name__}: {exc}")
    return True


def diagnose(*, issue: Issue, occurrence: Occurrence | None) -> dict[str, Any]:
    """Level 0 (a known pattern) or Level 1 (the LLM). The answer is plain data for the next stages."""
    from . import diagnosis as llm_diagnosis
    from .patterns import active_library, pattern_candidates, pattern_match

    match = pattern_match(issue=issue, occurrence=occurrence)
    if match is not None:
        metrics.PATTERN_LOOKUPS.labels(outcome="hit").inc()
        return {
            "outcome": "plan",
            "level": "pattern",
            "plan": match.plan,
            "pattern_id": match.pattern.pk,
            "root_cause": f"Known problem: {match.pattern.name} (confidence {match.confidence:.2f})",
            "user_message": "",
        }
    metrics.PATTERN_LOOKUPS.labels(outcome="miss").inc()
    candidates = [
        {"pattern_id": c.pattern_id, "confidence": round(c.confidence, 3)}
        for c in pattern_candidates(issue=issue, occurrence=occurrence, library=active_library())[:3]
    ]
    result = llm_diagnosis.issue_diagnose(issue=issue, candidates=candidates)
    if result.ok and result.diagnosis.remediation_plan:
        found = result.diagnosis
        return {
            "outcome": "plan",
            "level": "llm",
            "plan": [step.model_dump() for step in found.remediation_plan],
            "pattern_id": None,
            "root_cause": found.root_cause,
            "user_message": found.user_message,
        }
    if result.ok:  # a diagnosis without a plan this loop can run (e.g. a code patch only)
        return {"outcome": "escalate", "reason": f"No automatic fix: {result.diagnosis.root_cause}"}
    return {"outcome": result.fallback or "escalate", "reason": result.reason, "question": result.question}


def _flag_of(plan: list[Mapping[str, Any]]) -> str:
    return next(
        (str(s["params"]["flag"]) for s in plan if s["action"] in FLAG_ACTIONS and "flag" in s.get("params", {})), ""
    )


def change_fix(*, issue: Issue, occurrence: Occurrence | None, diagnosis: Mapping[str, Any]) -> None:
    """Open the Change, run its non-flag steps, verify in the sandbox, then deploy or abort."""
    from flags.rollout import rollout_start

    from . import verify
    from .changes import change_create, change_record_scorecard, change_transition
    from .models import ChangeStatus
    from .remediation import RemediationContext, remediation_plan_run

    plan = list(diagnosis["plan"])
    user_id = occurrence.user_id if occurrence else ""
    change = change_create(
        title=f"Fix: {issue.title}"[:255],
        severity=issue.severity,
        issue=issue,
        plan=plan,
        flag_key=_flag_of(plan),
        objective=diagnosis["root_cause"],
        success_criteria="The failing request succeeds 10/10 in the sandbox (5 as the user, 5 as a generic account).",
        abort_criteria="Any replay fails, the issue occurs again during verification or rollout, or errors rise.",
        rollback_plan="Kill the flag; undo the remediation steps.",
        actor=AUTOMATIC,
        why=f"{diagnosis['level']} diagnosis",
    )
    for to in (ChangeStatus.PLANNED, ChangeStatus.IN_PROGRESS):
        change = change_transition(change=change, to=to, actor=AUTOMATIC, why="healing pipeline")
    _move(issue, expected=Stage.ROOT_CAUSE_FOUND, to=Stage.FIXING, detail=change.key)

    direct_steps = [s for s in plan if s["action"] not in FLAG_ACTIONS]
    if direct_steps:
        report = remediation_plan_run(
            plan=direct_steps, context=RemediationContext(issue=issue, change=change, user_id=user_id), actor=AUTOMATIC
        )
        if not report.ok:
            _abort(
                issue=issue,
                change=change,
                expected=Stage.FIXING,
                why=report.summary,
                pattern_id=diagnosis["pattern_id"],
            )
            return

    _move(issue, expected=Stage.FIXING, to=Stage.VERIFYING, detail=change.key)
    before = issue.occurrence_count
    verdict = verify.change_verify(
        replay=verify.replay_of(occurrence.payload) if occurrence else None,
        project_id=issue.project_id,
        affected_user=user_id,
        flag_key=change.flag_key or None,
        occurrences_before=before,
        occurrences_now=lambda: Issue.objects.filter(pk=issue.pk).values_list("occurrence_count", flat=True).get(),
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
        _abort(
            issue=issue,
            change=change,
            expected=Stage.VERIFYING,
            why=verdict.summary(),
            pattern_id=diagnosis["pattern_id"],
        )
        return

    change = change_transition(change=change, to=ChangeStatus.IN_REVIEW, actor=AUTOMATIC, why=verdict.summary())
    running = _active_rollout(issue=issue, flag_key=change.flag_key)
    if running is not None:
        # The same fix is already rolling out for another issue: give it to this user now and let
        # that rollout take it to everyone (one flag, one rollout).
        flag_steps = [s for s in plan if s["action"] in FLAG_ACTIONS]
        context = RemediationContext(issue=issue, change=change, user_id=user_id)
        remediation_plan_run(plan=flag_steps, context=context, actor=AUTOMATIC)
        change = change_record_scorecard(
            change=change, actor=AUTOMATIC, metrics_after={"rides_rollout_of": running.change.key}
        )
        change = change_transition(
            change=change, to=ChangeStatus.CANARY, actor=AUTOMATIC, why=f"rides {running.change.key}"
        )
        _deployed(issue=issue, change=change, level=diagnosis["level"])
    elif change.flag_key:
        rollout_start(change=change, actor=AUTOMATIC, affected_user_id=user_id, **rollout_durations())
        _deployed(issue=issue, change=change, level=diagnosis["level"])
    else:
        # Nothing to roll out: the fix (a webhook, a cache clear) is already in place for everyone it concerns.
        for to in (ChangeStatus.CANARY, ChangeStatus.COMPLETE):
            change = change_transition(change=change, to=to, actor=AUTOMATIC, why=verdict.summary())
        _deployed(issue=issue, change=change, level=diagnosis["level"])
        change_completed(change_id=change.pk)


def _active_rollout(*, issue: Issue, flag_key: str):
    from flags.models import ACTIVE_PHASES, Rollout

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


def _level(change) -> str:
    return (change.scorecard.get("verification") or {}).get("level") or "pattern"


def _deployed(*, issue: Issue, change, level: str) -> None:
    if _move(issue, expected=Stage.VERIFYING, to=Stage.DEPLOYED, detail=change.key):
        first_seen = Issue.objects.filter(pk=issue.pk).values_list("first_seen", flat=True).get()
        MTTR.labels(scope="user", level=level).observe((timezone.now() - first_seen).total_seconds())


def change_completed(*, change_id: int) -> None:
    """A Change's fix reached everyone: the issue is resolved and the incident learned."""
    from .learning import incident_learn
    from .models import Change

    change = Change.objects.select_related("issue").get(pk=change_id)
    _riders_complete(change)
    issue = change.issue
    if issue is None or not _move(
        issue, expected=(Stage.DEPLOYED, Stage.VERIFYING), to=Stage.RESOLVED, detail=change.key
    ):
        return
    MTTR.labels(scope="full", level=_level(change)).observe((timezone.now() - issue.first_seen).total_seconds())
    pattern_id = (change.scorecard.get("verification") or {}).get("pattern_id")
    from .models import ErrorPattern

    incident_learn(change=change, pattern=ErrorPattern.objects.filter(pk=pattern_id).first() if pattern_id else None)
    metrics.FIXES.labels(outcome="resolved", level=_level(change)).inc()
    from .rca import rca_draft_for_incident

    rca_draft_for_incident(issue=issue, change=change)  # P0/P1 only; outside any transaction (it may ask the LLM)


def _riders_complete(change) -> None:
    """Changes that rode this one's rollout are complete with it."""
    from .changes import change_transition
    from .models import Change, ChangeStatus

    riders = Change.objects.filter(
        status=ChangeStatus.CANARY, flag_key=change.flag_key, scorecard__metrics__after__rides_rollout_of=change.key
    )
    for rider in riders:
        rider = change_transition(
            change=rider, to=ChangeStatus.COMPLETE, actor=AUTOMATIC, why=f"{change.key} rolled out"
        )
        change_completed(change_id=rider.pk)


def change_rolled_back(*, change_id: int, why: str) -> None:
    """The rollout saw a degradation and rolled back (it already killed the flag and raised the
    issue to P0): the issue is escalated and the pattern weakened."""
    from .learning import incident_fix_failed
    from .models import Change

    change = Change.objects.select_related("issue").get(pk=change_id)
    if change.issue is not None:
        issue_escalate(
            issue=change.issue, expected=(Stage.DEPLOYED, Stage.VERIFYING), why=why, to=Stage.ABORTED, change=change
        )
        incident_fix_failed(change=change)
    metrics.FIXES.labels(outcome="rolled_back", level=_level(change)).inc()


def _abort(*, issue: Issue, change, expected: str, why: str, pattern_id: int | None) -> None:
    from .changes import change_transition
    from .learning import incident_fix_failed
    from .models import ChangeStatus, ErrorPattern

    change = change_transition(change=change, to=ChangeStatus.ABORTED, actor=AUTOMATIC, why=why)
    issue_escalate(issue=issue, expected=expected, why=why, to=Stage.ABORTED, change=change)
    pattern = ErrorPattern.objects.filter(pk=pattern_id).first() if pattern_id else None
    incident_fix_failed(change=change, pattern=pattern)
    metrics.FIXES.labels(outcome="aborted", level=_level(change)).inc()


def issue_escalate(
    *, issue: Issue, expected: str | tuple[str, ...], why: str, to: str = Stage.ESCALATED, change=None
) -> None:
    """A person is needed: the issue goes to P0, the owner is alerted and gets a draft RCA."""
    from .rca import rca_draft_for_incident

    if not _move(issue, expected=expected, to=to, detail=why):
        return
    with transaction.atomic():
        Issue.objects.filter(pk=issue.pk).update(severity=Severity.P0)
        # The owner alert; notifications (push, SMS, email, Slack) subscribe to this audit action.
        audit_record(
            actor=AUTOMATIC, action="owner.alert", target=f"issue:{issue.pk}", detail={"stage": to, "why": why}
        )
    logger.warning("issue escalated to the owner", extra={"issue": str(issue.pk), "stage": to, "why": why})
    issue.severity = Severity.P0
    rca_draft_for_incident(issue=issue, change=change)
