"""Remediation actions: the named, validated, recorded and undoable steps a fix is made of.

A plan is a list of {"action": <name>, "params": {…}}. `remediation_plan_validate` refuses
unknown actions and bad params; `remediation_plan_run` runs the steps in order and undoes the
ones already done when a step fails. Every run and undo is a RemediationRun row and an audit entry.
"""

from healing.remediation import cache_clear, flag_actions, task_retry, webhook  # noqa: F401 - importing registers the built-ins
from healing.remediation.base import ACTIONS, Action, Outcome, RemediationContext, RemediationError, register
from healing.remediation.plans import (
    PlanReport,
    RemediationPlanError,
    Step,
    UndoReport,
    change_steps_undo,
    plan_risk,
    raw_plan_risk,
    remediation_plan_run,
    remediation_plan_validate,
    remediation_step_run,
    remediation_undo,
)

__all__ = [
    "ACTIONS", "Action", "Outcome", "PlanReport", "RemediationContext", "RemediationError", "RemediationPlanError",
    "Step", "UndoReport", "change_steps_undo", "plan_risk", "raw_plan_risk", "register", "remediation_plan_run",
    "remediation_plan_validate", "remediation_step_run", "remediation_undo",
]  # fmt: skip
