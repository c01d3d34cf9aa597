"""Running remediation: one step at a time, each recorded as a RemediationRun and in the audit
log; a plan in order, undoing the steps already done (newest first) when one fails."""

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError as ParamsError

from healing.audit import audit_record
from healing.models import RISK_ORDER, Change, Project, RemediationOutcome, RemediationRun, RiskLevel
from healing.remediation.base import ACTIONS, Action, Outcome, Params, RemediationContext, RemediationError

logger = logging.getLogger("kaizen.remediation")

MAX_STEPS = 20


class RemediationPlanError(ValueError):
    """The plan cannot run; `problems` lists every reason, each naming its step."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("The remediation plan is not valid: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Step:
    number: int  # from 1, as the console shows it
    action: Action
    params: Params

    @property
    def params_json(self) -> dict[str, Any]:
        return self.params.model_dump(mode="json")


def _params_problems(exc: ParamsError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'params'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def remediation_plan_validate(plan: Any, *, project: Project | None = None) -> list[Step]:
    """Each step's action must be registered and its params must fit the action's schema (and,
    given the project, what only the project can tell: that a named webhook exists)."""
    if not isinstance(plan, list | tuple):
        raise RemediationPlanError(['a plan is a list of steps: [{"action": …, "params": {…}}]'])
    if len(plan) > MAX_STEPS:
        raise RemediationPlanError([f"a plan has at most {MAX_STEPS} steps; this one has {len(plan)}"])
    steps, problems = [], []
    for number, raw in enumerate(plan, start=1):
        if not isinstance(raw, Mapping) or set(raw) - {"action", "params"} or not isinstance(raw.get("action"), str):
            problems.append(f'step {number}: expected {{"action": "<name>", "params": {{…}}}}, got {raw!r:.200}')
            continue
        action = ACTIONS.get(raw["action"])
        if action is None:
            known = ", ".join(sorted(ACTIONS))
            problems.append(f'step {number}: unknown action "{raw["action"]:.100}" (known: {known})')
            continue
        try:
            params = action.Params.model_validate(raw.get("params") or {})
        except ParamsError as exc:
            problems.append(f"step {number} ({action.name}): {_params_problems(exc)}")
            continue
        problems += [f"step {number} ({action.name}): {problem}" for problem in action.check(params, project=project)]
        steps.append(Step(number=number, action=action, params=params))
    if problems:
        raise RemediationPlanError(problems)
    return steps


def plan_risk(steps: Sequence[Step]) -> RiskLevel:
    """The highest risk among the steps (low for an empty plan)."""
    return max((step.action.risk for step in steps), key=RISK_ORDER.index, default=RiskLevel.LOW)


def raw_plan_risk(plan: Any) -> RiskLevel:
    """The risk of a plan as stored on a Change: a plan the registry refuses (an action that no
    longer exists, params it no longer takes) cannot be judged, so it counts as high."""
    try:
        return plan_risk(remediation_plan_validate(plan))
    except RemediationPlanError:
        return RiskLevel.HIGH


def _call(fn, *args) -> Outcome:
    try:
        return fn(*args)
    except (RemediationError, ValidationError) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return Outcome(ok=False, detail=text, result=getattr(exc, "result", {}))
    except Exception as exc:  # noqa: BLE001 - one broken action must not leave the steps before it in place
        logger.exception("remediation action crashed")
        return Outcome(ok=False, detail=f"{type(exc).__name__}: {exc}")


def _finish(run: RemediationRun, outcome: Outcome, *, audit_action: str) -> RemediationRun:
    run.outcome = RemediationOutcome.OK if outcome.ok else RemediationOutcome.FAILED
    run.detail = outcome.detail if outcome.ok else ""
    run.error = "" if outcome.ok else outcome.detail
    run.result, run.undo_data = outcome.result, (outcome.undo_data if outcome.ok else None)
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["outcome", "detail", "error", "result", "undo_data", "finished_at"])
        audit_record(
            actor=run.actor,
            action=audit_action,
            target=f"remediation:{run.pk}",
            detail={
                "action": run.action, "ok": outcome.ok, "detail": outcome.detail, "params": run.params,
                "issue": str(run.issue_id) if run.issue_id else None, "change": run.change_id, "user_id": run.user_id,
                "plan_run": str(run.plan_run) if run.plan_run else None, "step": run.step,
            },
        )  # fmt: skip
    return run


def _new_run(*, action: Action, params: dict[str, Any], context: RemediationContext, **fields) -> RemediationRun:
    # Written before the action runs, so a process that dies mid-step leaves a "running" row behind.
    project = context.target_project
    return RemediationRun.objects.create(
        action=action.name, risk=action.risk, params=params, project=project, issue=context.issue,
        change=context.change, user_id=context.user_id, actor=context.actor, **fields,
    )  # fmt: skip


def remediation_step_run(
    *, step: Step, context: RemediationContext, plan_run: uuid.UUID | None = None
) -> RemediationRun:
    run = _new_run(action=step.action, params=step.params_json, context=context, plan_run=plan_run, step=step.number)
    outcome = _call(step.action.run, step.params, context)
    return _finish(run, outcome, audit_action="remediation.run")


def _context_of(run: RemediationRun, actor: str) -> RemediationContext:
    return RemediationContext(project=run.project, issue=run.issue, change=run.change, user_id=run.user_id, actor=actor)


def remediation_undo(*, run: RemediationRun, actor: str) -> RemediationRun | None:
    """Undo a step that ran; returns the undo's own run, or None when there was nothing to undo
    or it was undone already (so a repeated undo does nothing)."""
    action = ACTIONS.get(run.action)
    if action is None or run.outcome != RemediationOutcome.OK or run.undo_data is None:
        return None
    # Claimed first: two undoers (the rollback and the owner's click) must not both undo.
    if not RemediationRun.objects.filter(pk=run.pk, undone_at__isnull=True).update(undone_at=timezone.now()):
        return None
    context = _context_of(run, actor)
    undo = _new_run(action=action, params=run.params, context=context, plan_run=run.plan_run, step=run.step,
                    undo_of=run)  # fmt: skip
    outcome = _call(action.undo, run.undo_data, context)
    _finish(undo, outcome, audit_action="remediation.undo")
    if not outcome.ok:
        RemediationRun.objects.filter(pk=run.pk).update(undone_at=None)  # still in place: may be retried
    run.refresh_from_db(fields=["undone_at"])
    return undo


@dataclass
class PlanReport:
    plan_run: uuid.UUID
    runs: list[RemediationRun] = field(default_factory=list)  # the steps, in order, up to the failed one
    failed: RemediationRun | None = None
    undone: list[RemediationRun] = field(default_factory=list)  # the undo runs, newest step first
    not_undone: list[str] = field(default_factory=list)  # steps left in place, and why

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def summary(self) -> str:
        if self.ok:
            return f"{len(self.runs)} step(s) done."
        text = f"Step {self.failed.step} ({self.failed.action}) failed: {self.failed.error}"
        if self.undone:
            text += f" Undone: {', '.join(f'step {run.step}' for run in self.undone if run.outcome == 'ok')}."
        if self.not_undone:
            text += f" Not undone: {'; '.join(self.not_undone)}."
        return text


def remediation_plan_run(*, plan: Sequence[Mapping[str, Any]], context: RemediationContext, actor: str) -> PlanReport:
    """Run the plan's steps in order. The whole plan is validated first (RemediationPlanError:
    nothing ran). When a step fails, the ones before it are undone, newest first."""
    context = replace(context, actor=actor)
    steps = remediation_plan_validate(plan, project=context.target_project)
    report = PlanReport(plan_run=uuid.uuid4())
    for step in steps:
        run = remediation_step_run(step=step, context=context, plan_run=report.plan_run)
        report.runs.append(run)
        if run.outcome != RemediationOutcome.OK:
            report.failed = run
            break
    if report.failed is not None:
        for run in reversed(report.runs[:-1]):
            action = ACTIONS[run.action]
            if run.undo_data is None:
                why = action.no_undo or "it left nothing to undo"
                report.not_undone.append(f"step {run.step} ({run.action}): {why}")
                continue
            undo = remediation_undo(run=run, actor=actor)
            if undo is not None:
                report.undone.append(undo)
                if undo.outcome != RemediationOutcome.OK:
                    report.not_undone.append(f"step {run.step} ({run.action}): its undo failed: {undo.error}")
    audit_record(
        actor=actor,
        action="remediation.plan",
        target=f"plan:{report.plan_run}",
        detail={
            "ok": report.ok, "summary": report.summary, "steps": len(steps), "runs": [run.pk for run in report.runs],
            "issue": str(context.issue.pk) if context.issue else None,
            "change": context.change.key if context.change else None,
        },
    )  # fmt: skip
    if not report.ok:
        logger.warning("remediation plan failed", extra={"plan_run": str(report.plan_run), "summary": report.summary})
    return report


@dataclass
class UndoReport:
    undone: list[RemediationRun] = field(default_factory=list)  # the undo runs, newest step first
    not_undone: list[str] = field(default_factory=list)  # steps left in place, and why

    @property
    def summary(self) -> str:
        text = f"{len(self.undone)} step(s) undone."
        return text + (f" Left in place: {'; '.join(self.not_undone)}." if self.not_undone else "")


def change_steps_undo(*, change: Change, actor: str, why: str) -> UndoReport:
    """Undo every step that ran for `change` and is still in place, newest first: an aborted
    Change must leave nothing of itself applied. Idempotent (an undone step is not undone twice)."""
    report = UndoReport()
    applied = RemediationRun.objects.select_related("project", "issue", "change").filter(
        change=change, undo_of__isnull=True, outcome=RemediationOutcome.OK, undone_at__isnull=True
    )
    applied = list(applied.order_by("-started_at", "-id"))
    if not applied:
        return report  # nothing of it in place: nothing to record either
    for run in applied:
        if run.undo_data is None:
            action = ACTIONS.get(run.action)
            why_kept = (action.no_undo if action else "") or "it left nothing to undo"
            report.not_undone.append(f"step {run.step} ({run.action}): {why_kept}")
            continue
        undo = remediation_undo(run=run, actor=actor)
        if undo is None:
            continue  # undone meanwhile by someone else
        report.undone.append(undo)
        if undo.outcome != RemediationOutcome.OK:
            report.not_undone.append(f"step {run.step} ({run.action}): its undo failed: {undo.error}")
    audit_record(
        actor=actor,
        action="change.undo_steps",
        target=f"change:{change.key}",
        detail={"why": why, "undone": [run.undo_of_id for run in report.undone], "not_undone": report.not_undone},
    )
    if report.not_undone:
        logger.warning("aborted change left steps in place", extra={"change": change.key, "left": report.not_undone})
    return report
