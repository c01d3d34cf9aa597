"""The promotion policy: whether Kaizen may promote a rollout by itself or must wait for the
owner's approval. The owner's PromotionPolicy caps the declared risk and the exposure promoted
without approval, sets a daily LLM budget, and can block promotions during their night."""

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone

from healing.models import Change

from .health import phase_exposure
from .models import RISK_ORDER, PromotionPolicy, RiskLevel, Rollout

# "Risk: high" in a patch summary (markdown emphasis allowed).
RISK_LINE = re.compile(r"^\W*risk\W*[:=]\W*([a-z]+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    reasons: tuple[str, ...] = ()


def change_risk(*, change: Change) -> str:
    """The highest risk its plan steps (params.risk) or patch summary ("Risk: high") declare;
    low when none does."""
    declared = [str(step.get("params", {}).get("risk", "")).strip().lower() for step in change.plan or []]
    declared += [word.lower() for word in RISK_LINE.findall(change.patch_summary or "")]
    # An unrecognised level ("critical", a typo) counts as the highest: a policy fails closed.
    levels = [level if level in RISK_ORDER else RiskLevel.HIGH for level in declared if level]
    return max(levels, key=lambda level: RISK_ORDER[level], default=RiskLevel.LOW)


def policy_for(*, project_id: int) -> PromotionPolicy:
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
    if RISK_ORDER[risk] > RISK_ORDER[policy.max_auto_risk]:
        reasons.append(f"risk {risk} is above {policy.max_auto_risk}, the highest promoted without approval")
    exposure = phase_exposure(rollout, to_phase)
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
    return PolicyDecision(allowed=not reasons, reasons=tuple(reasons))
