"""Scoring proposals: the formula, and the deterministic heuristic used when no LLM is configured
(or the LLM's answer could not be used), so the morning list is always there."""

import re
from dataclasses import dataclass, field
from typing import Any

from .models import Category

QUICK_FIX_MAX_EFFORT = 4  # effort ≤ this (of 10) is a quick fix...
QUICK_FIX_LOW_RISK = (5, 3)  # ...and so is a middling effort (≤ 5) at low risk (≤ 3)


def proposal_score(*, impact: int, edge: int, effort: int, risk: int, revenue: int) -> float:
    """Score = Impact×2 + Edge − Effort − Risk×1.5 + Revenue (each 1–10): from −21 to 37.5."""
    for name, value in (("impact", impact), ("edge", edge), ("effort", effort), ("risk", risk), ("revenue", revenue)):
        if not 1 <= value <= 10:
            raise ValueError(f"{name} must be 1–10, not {value}")
    return impact * 2 + edge - effort - risk * 1.5 + revenue


def category_for(*, effort: int, risk: int) -> str:
    max_effort, max_risk = QUICK_FIX_LOW_RISK
    quick = effort <= QUICK_FIX_MAX_EFFORT or (effort <= max_effort and risk <= max_risk)
    return Category.QUICK_FIX if quick else Category.HIGH_IMPACT


@dataclass(frozen=True)
class Candidate:
    """Something worth turning into a proposal, before analysis."""

    origin: str  # news | competitor | feedback
    title: str
    text: str
    strength: float  # 0–1: how strong the evidence is (reports, points, a competitor shipping it)
    item_ids: tuple[int, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    what: str
    why: str
    how: str
    files: list[str]
    risk_notes: str
    time_estimate: str
    impact: int
    effort: int
    risk: int
    edge: int
    revenue: int
    category: str
    analysis: dict[str, Any]
    scored_by: str

    @property
    def score(self) -> float:
        return proposal_score(
            impact=self.impact, edge=self.edge, effort=self.effort, risk=self.risk, revenue=self.revenue
        )


CUES: dict[str, tuple[tuple[str, int], ...]] = {
    # (pattern, weight): words that move a score, read from the candidate's title and text.
    "effort_down": (
        (r"\b(copy|wording|label|tooltip|docs?|typo|button|message|setting|toggle|shortcut|default|link)\b", 2),
    ),
    "effort_up": (
        (r"\b(migrat\w*|rewrite|architecture|real-?time|collaborat\w*|sync|offline|multi-?\w+|agent\w*|platform)\b", 2),
        (r"\b(model|fine-?tun\w*|infrastructure|scal\w+|database|framework|integration)\b", 1),
    ),
    "risk_up": (
        (r"\b(auth\w*|login|password|billing|payment\w*|checkout|security|permission\w*|delete|data loss)\b", 3),
        (r"\b(database|migrat\w*|api|breaking|deploy\w*)\b", 1),
    ),
    "revenue_up": (
        (r"\b(pricing|checkout|billing|subscription|upgrade|convert\w*|conversion|paid|plan|trial|onboarding)\b", 3),
        (r"\b(team\w*|enterprise|export|integration\w*|share|sharing)\b", 1),
    ),
}


def _cue(name: str, text: str) -> int:
    return sum(weight for pattern, weight in CUES[name] if re.search(pattern, text, re.IGNORECASE))


def _clamp(value: float) -> int:
    return int(max(1, min(10, round(value))))


def heuristic_assess(*, candidate: Candidate) -> Assessment:
    """Deterministic: the same candidate always gets the same scores, with the reasons stored."""
    text = f"{candidate.title} {candidate.text}"
    base_impact = {"feedback": 6, "competitor": 5, "news": 4}.get(candidate.origin, 4)
    impact = _clamp(base_impact + 4 * candidate.strength)
    # What users report is usually a contained fix; a competitor's feature is a build.
    base_effort = {"feedback": 4, "competitor": 6, "news": 5}.get(candidate.origin, 5)
    effort = _clamp(base_effort + _cue("effort_up", text) - _cue("effort_down", text))
    risk = _clamp(2 + _cue("risk_up", text))
    # A competitor shipping it first means catching up, not an edge; news others have not acted on is.
    edge = _clamp({"competitor": 3, "news": 6, "feedback": 5}.get(candidate.origin, 4) + 2 * candidate.strength)
    revenue = _clamp(2 + _cue("revenue_up", text) + (2 if candidate.origin == "feedback" else 0))
    reasons = {
        "method": "heuristic (no LLM)",
        "impact": f"{candidate.origin} evidence of strength {candidate.strength:.2f}",
        "effort": f"effort cues +{_cue('effort_up', text)} −{_cue('effort_down', text)}",
        "risk": f"risk cues +{_cue('risk_up', text)}",
        "revenue": f"revenue cues +{_cue('revenue_up', text)}",
    }
    origin_why = {
        "feedback": "Users keep running into this",
        "competitor": f"{candidate.context.get('competitor', 'A competitor')} ships this and we do not",
        "news": "New in the field and relevant to the product",
    }.get(candidate.origin, "Relevant to the product")
    return Assessment(
        what=candidate.title,
        why=f"{origin_why}: {candidate.text[:400]}",
        how="Prototype behind a feature flag, measure against the success criteria, then roll out.",
        files=[],
        risk_notes="; ".join(f"{k}: {v}" for k, v in reasons.items() if k == "risk"),
        time_estimate=f"{max(1, effort // 2)} day(s)",
        impact=impact,
        effort=effort,
        risk=risk,
        edge=edge,
        revenue=revenue,
        category=category_for(effort=effort, risk=risk),
        analysis=reasons,
        scored_by="heuristic",
    )
