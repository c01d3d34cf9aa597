"""How a Change's plan reaches users, step by step, and whether the owner's promotion policy lets
each step run unattended (flags.rollout.promotion.step_check).

- rollout: the flag the Change rolls out, turned on for the affected user first, then for a share
  of users and everyone, each promotion under the policy (flags.rollout.engine);
- direct: steps for the affected user alone, within the policy's risk cap; they run before
  verification, as the canary does, since they reach no one the bug spared;
- wide: steps that change what other users get (a rollout percentage, a kill switch), within every
  limit of the policy; they never run before verification;
- held: steps the policy does not let run unattended: they wait for the owner.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flags.rollout.promotion import step_check
from healing.models import Change
from healing.remediation import remediation_plan_validate

# Steps the rollout applies (through the flag), not the pipeline.
FLAG_ACTIONS = {"flag_enable_for_user"}


@dataclass(frozen=True)
class PlanEntry:
    number: int  # position in the plan, from 1
    raw: Mapping[str, Any]
    per_user: bool
    reasons: tuple[str, ...] = ()  # why the policy holds it


@dataclass
class PlanSplit:
    rollout: list[PlanEntry] = field(default_factory=list)
    direct: list[PlanEntry] = field(default_factory=list)
    wide: list[PlanEntry] = field(default_factory=list)
    held: list[PlanEntry] = field(default_factory=list)

    @property
    def per_user_only(self) -> bool:
        """Everything that runs acts for the affected user alone: their case is fixed, not the cause."""
        ran = [*self.direct, *self.wide]
        return bool(ran) and not self.rollout and all(entry.per_user for entry in ran)


def plan_split(*, change: Change, approved: bool = False) -> PlanSplit:
    """Split the Change's plan. `approved`: the owner has approved the held steps, which then run
    with the wide ones. Raises RemediationPlanError when the plan is not runnable."""

    project_id = change.issue.project_id if change.issue_id else None
    steps = remediation_plan_validate(change.plan, project=change.issue.project if change.issue_id else None)
    split = PlanSplit()
    for step, raw in zip(steps, change.plan, strict=True):
        entry = PlanEntry(number=step.number, raw=raw, per_user=step.action.per_user)
        if raw["action"] in FLAG_ACTIONS:
            split.rollout.append(entry)
            continue
        exposure = step.action.exposure(step.params)
        decision = step_check(project_id=project_id, risk=step.action.risk, exposure=exposure)
        if not decision.allowed and not approved:
            split.held.append(PlanEntry(number=step.number, raw=raw, per_user=entry.per_user,
                                        reasons=decision.reasons))  # fmt: skip
        elif exposure > 0 or not decision.allowed:
            split.wide.append(entry)
        else:
            split.direct.append(entry)
    return split
