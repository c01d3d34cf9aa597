"""The daily proposals: candidates from news, competitor gaps and user feedback; each analysed
(Claude, or the heuristic); the top ten as 5 HIGH_IMPACT + 5 QUICK_FIX, none repeating a
proposal that is still open or was rejected."""

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx2
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .analysis import llm_assess
from .competitors import gaps_open
from .models import OPEN_PROPOSAL_STATUSES, Category, FeedbackTheme, Proposal, ProposalStatus, ResearchRun, SourceItem
from .scoring import Assessment, Candidate, heuristic_assess
from .similarity import jaccard

PER_CATEGORY = 5
DUPLICATE_THRESHOLD = 0.5  # word overlap (Jaccard) above which two proposals are the same idea
NEWS_WINDOW = timedelta(days=2)
# Proposals whose idea must not come back: still on the table, or turned down by the owner.
BLOCKING = Q(status__in=(*OPEN_PROPOSAL_STATUSES, ProposalStatus.DISMISSED, ProposalStatus.ABANDONED))


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    assessment: Assessment


def candidates_gather(*, run: ResearchRun, now: datetime) -> list[Candidate]:
    candidates = []
    for theme in FeedbackTheme.objects.filter(run=run)[:10]:
        candidates.append(
            Candidate(
                origin="feedback",
                title=f"Fix what users report: {theme.label}",
                text=" | ".join(theme.examples),
                strength=min(1.0, math.log1p(theme.rank) / math.log1p(100)),
                context={"reports": theme.reports, "users": theme.users},
            )
        )
    for gap in gaps_open(limit=15):
        candidates.append(
            Candidate(
                origin="competitor",
                title=f"Add {gap.feature}"[:300],
                text=f"{gap.source.name} announced: {gap.entry_title}. {gap.feature}",
                strength=0.6,
                context={"competitor": gap.source.name, "entry_url": gap.entry_url},
            )
        )
    items = list(
        SourceItem.objects.filter(relevant=True, fetched_at__gte=now - NEWS_WINDOW).order_by("-signal", "-fetched_at")[
            :40
        ]
    )
    top_signal = max((item.signal for item in items), default=0.0) or 1.0
    for item in items:
        candidates.append(
            Candidate(
                origin="news",
                title=f"Adopt: {item.title}"[:300],
                text=item.summary[:1500] or item.title,
                strength=0.3 + 0.7 * (item.signal / top_signal),
                item_ids=(item.pk,),
                context={"source": item.source_id, "url": item.url},
            )
        )
    return candidates[: settings.KAIZEN_RESEARCH_MAX_CANDIDATES]


def prior_proposals(*, title: str, limit: int = 5) -> list[dict[str, Any]]:
    """Similar past proposals and what became of them, for the PRIOR KNOWLEDGE phase."""
    past = Proposal.objects.exclude(status=ProposalStatus.PROPOSED).values("title", "status", "dismiss_reason")[:500]
    ranked = sorted(past, key=lambda p: jaccard(title, p["title"]), reverse=True)
    return [p for p in ranked[:limit] if jaccard(title, p["title"]) > 0.2]


def candidates_assess(*, candidates: list[Candidate], http_client: httpx2.Client | None = None) -> list[Scored]:
    use_llm = bool(settings.ANTHROPIC_API_KEY)
    scored = []
    for candidate in candidates:
        if use_llm:
            assessment = llm_assess(
                candidate=candidate, prior=prior_proposals(title=candidate.title), http_client=http_client
            )
        else:
            assessment = heuristic_assess(candidate=candidate)
        scored.append(Scored(candidate=candidate, assessment=assessment))
    return scored


def is_duplicate(*, title: str, against: list[str]) -> bool:
    return any(jaccard(title, other) >= DUPLICATE_THRESHOLD for other in against)


def top_select(*, scored: list[Scored], blocked_titles: list[str], per_category: int = PER_CATEGORY) -> list[Scored]:
    """Best per category, skipping duplicates of blocked proposals and of each other. When one
    category has fewer than `per_category` candidates, the best remaining of the other fill the ten."""
    ranked = sorted(scored, key=lambda s: (-s.assessment.score, s.assessment.what))
    taken: list[Scored] = []
    titles = list(blocked_titles)
    leftovers = []
    counts = {Category.HIGH_IMPACT: 0, Category.QUICK_FIX: 0}
    for entry in ranked:
        if is_duplicate(title=entry.assessment.what, against=titles):
            continue
        if counts[entry.assessment.category] < per_category:
            counts[entry.assessment.category] += 1
            taken.append(entry)
            titles.append(entry.assessment.what)
        else:
            leftovers.append(entry)
    for entry in leftovers:
        if len(taken) >= 2 * per_category:
            break
        if not is_duplicate(title=entry.assessment.what, against=titles):
            taken.append(entry)
            titles.append(entry.assessment.what)
    return taken


def proposals_make(
    *, run: ResearchRun, day: date, now: datetime | None = None, http_client: httpx2.Client | None = None
) -> list[Proposal]:
    """Today's proposals; a second call for the same day adds none (the first run's stand)."""
    now = now or timezone.now()
    if Proposal.objects.filter(day=day).exists():
        return list(Proposal.objects.filter(day=day))
    scored = candidates_assess(candidates=candidates_gather(run=run, now=now), http_client=http_client)
    blocked = list(Proposal.objects.filter(BLOCKING).values_list("title", flat=True)[:2000])
    chosen = top_select(scored=scored, blocked_titles=blocked)
    created = []
    with transaction.atomic():
        for entry in chosen:
            a = entry.assessment
            proposal = Proposal.objects.create(
                run=run, day=day, origin=entry.candidate.origin, title=a.what[:300], what=a.what, why=a.why,
                how=a.how, files=a.files, risk_notes=a.risk_notes, time_estimate=a.time_estimate[:100],
                impact=a.impact, effort=a.effort, risk=a.risk, edge=a.edge, revenue=a.revenue, score=a.score,
                category=a.category, scored_by=a.scored_by, analysis=a.analysis,
                success_criteria=success_criteria(assessment=a), abort_criteria=abort_criteria(assessment=a),
            )  # fmt: skip
            proposal.sources.set(entry.candidate.item_ids)
            created.append(proposal)
    return created


def success_criteria(*, assessment: Assessment) -> str:
    return (
        f"{assessment.what} works for users in the 10 % canary; no new error issues on the touched routes; "
        "error rate and p95 latency no worse than before the flag."
    )


def abort_criteria(*, assessment: Assessment) -> str:
    return "Any new P0/P1 issue, error rate above the component's SLO, or a user report about the change during canary."
