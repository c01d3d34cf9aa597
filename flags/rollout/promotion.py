"""The promotion policy: whether Kaizen may promote a rollout, or run a remediation step that
changes what users get, by itself, or must wait for the owner's approval. The owner's
PromotionPolicy caps the risk and the exposure allowed without approval, sets a daily LLM budget,
and can block promotions during their night.

A Change's risk is its plan's (each registered action states its own) and its patch's: the
policy judges what will run, not what a plan says about itself."""

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from flags.models import PromotionPolicy, Rollout
from flags.rollout import signals
from flags.rollout.health import phase_exposure
from healing.models import Change, RiskLevel

# "Risk: high" in a patch summary (markdown emphasis allowed).
RISK_LINE = re.compile(r"^\W*risk\W*[:=]\W*([a-z]+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    reasons: tuple[str, ...] = ()


def change_risk(*, change: Change) -> RiskLevel:
    """The highest of its plan's risk (healing's action registry answers; a plan it refuses is
    high) and what its patch summary declares ("Risk: high", unrecognised words count as high)."""
    levels = [risk for _receiver, risk in signals.plan_risk_requested.send(sender=Change, plan=change.plan or [])]
    if not levels:
        # Nothing can judge the plan: judged as one the registry refuses.
        levels = [RiskLevel.HIGH]
    levels += [RiskLevel.parse(word) for word in RISK_LINE.findall(change.patch_summary or "")]
    return max(levels, key=lambda level: level.rank)


def step_check(
    *, project_id: int | None, risk: RiskLevel, exposure: int, now: datetime | None = None
) -> PolicyDecision:
    """Whether Kaizen may run a remediation step of this risk, reaching `exposure` % of users, by
    itself. A step for the affected user only (exposure 0) is held to the risk cap alone, like a
    canary; one that reaches others is held to every limit a promotion to that exposure is."""
    now = now or timezone.now()
    policy = policy_for(project_id=project_id)
    reasons = []
    if risk.rank > RiskLevel(policy.max_auto_risk).rank:
        reasons.append(f"risk {risk} is above {policy.max_auto_risk}, the highest run without approval")
    if exposure > 0:
        reasons += _exposure_reasons(policy, exposure=exposure, now=now)
    return PolicyDecision(allowed=not reasons, reasons=tuple(reasons))


def policy_for(*, project_id: int | None) -> PromotionPolicy:
    """The project's policy, else the default row, else the model's defaults (unsaved)."""
    policy = (
        PromotionPolicy.objects.filter(Q(project_id=project_id) | Q(project__isnull=True))
        .order_by(F("project").asc(nulls_last=True))
        .first()
    )
    return policy or PromotionPolicy()


def llm_spend_today(*, now: datetime) -> Decimal:
    """The LLM spend since midnight in the owner's timezone, in USD (unpriced calls count 0)."""
    try:
        # The call log is kaizen_site's LLMCall. Looked up by name so the policy keeps working
        # (as "nothing spent") in a deployment without it.
        calls = apps.get_model("kaizen_site", "LLMCall")
    except LookupError:
        return Decimal(0)
    midnight = _owner_now(now).replace(hour=0, minute=0, second=0, microsecond=0)
    spent = calls.objects.filter(created_at__gte=midnight, created_at__lte=now).aggregate(total=Sum("cost_usd"))
    return spent["total"] or Decimal(0)


def _owner_now(now: datetime) -> datetime:
    return now.astimezone(zoneinfo.ZoneInfo(settings.KAIZEN_OWNER_TIMEZONE))


def _in_blocked_hours(policy: PromotionPolicy, local: datetime) -> bool:
    start, end = policy.blocked_from_hour, policy.blocked_to_hour
    if start is None or end is None:
        return False
    if start < end:
        return start <= local.hour < end
    return local.hour >= start or local.hour < end  # spans midnight, e.g. 22 → 7


def policy_check(*, rollout: Rollout, to_phase: str, now: datetime | None = None) -> PolicyDecision:
    """Whether Kaizen may promote `rollout` to `to_phase` by itself, and if not, every reason."""
    now = now or timezone.now()
    policy = policy_for(project_id=rollout.flag.project_id)
    reasons = []
    risk = change_risk(change=rollout.change)
    if risk.rank > RiskLevel(policy.max_auto_risk).rank:
        reasons.append(f"risk {risk} is above {policy.max_auto_risk}, the highest promoted without approval")
    reasons += _exposure_reasons(policy, exposure=phase_exposure(rollout, to_phase), now=now)
    return PolicyDecision(allowed=not reasons, reasons=tuple(reasons))


def _exposure_reasons(policy: PromotionPolicy, *, exposure: int, now: datetime) -> list[str]:
    reasons = []
    if exposure > policy.max_auto_exposure:
        reasons.append(f"{exposure} % exposure is over the {policy.max_auto_exposure} % allowed without approval")
    spend = llm_spend_today(now=now)
    if spend > policy.daily_llm_budget_usd:
        reasons.append(f"today's LLM spend ${spend:.2f} is over the ${policy.daily_llm_budget_usd:.2f} daily budget")
    if _in_blocked_hours(policy, _owner_now(now)):
        # No clock time in the reason: the sweep asks every 30 s and records only changed reasons.
        reasons.append(
            f"within the blocked hours {policy.blocked_from_hour:02d}:00–{policy.blocked_to_hour:02d}:00 "
            f"({settings.KAIZEN_OWNER_TIMEZONE})"
        )
    return reasons
