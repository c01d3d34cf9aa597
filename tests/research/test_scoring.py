"""The formula, the heuristic, the 5 + 5 split and dedupe against open and rejected proposals."""

import pytest
from django.utils import timezone

from research.models import Category, Proposal, ProposalStatus, ResearchRun
from research.proposals import BLOCKING, Scored, top_select
from research.scoring import Assessment, Candidate, category_for, heuristic_assess, proposal_score


def test_formula():
    assert proposal_score(impact=8, edge=6, effort=3, risk=2, revenue=5) == 8 * 2 + 6 - 3 - 2 * 1.5 + 5 == 21
    assert proposal_score(impact=1, edge=1, effort=10, risk=10, revenue=1) == -21
    assert proposal_score(impact=10, edge=10, effort=1, risk=1, revenue=10) == 37.5


@pytest.mark.parametrize("field", ["impact", "edge", "effort", "risk", "revenue"])
@pytest.mark.parametrize("value", [0, 11])
def test_scores_out_of_range_are_refused(field, value):
    scores = {**dict(impact=5, edge=5, effort=5, risk=5, revenue=5), field: value}
    with pytest.raises(ValueError, match=field):
        proposal_score(**scores)


def test_quick_fix_by_effort_and_risk():
    assert category_for(effort=4, risk=9) == Category.QUICK_FIX
    assert category_for(effort=5, risk=3) == Category.QUICK_FIX
    assert category_for(effort=5, risk=4) == Category.HIGH_IMPACT
    assert category_for(effort=6, risk=1) == Category.HIGH_IMPACT


def test_heuristic_is_deterministic_and_reads_cues():
    risky = Candidate(origin="feedback", title="Checkout payment fails for some users", text="billing", strength=0.9)
    assert heuristic_assess(candidate=risky) == heuristic_assess(candidate=risky)
    calm = Candidate(origin="feedback", title="Clearer button label on settings", text="wording", strength=0.9)
    a, b = heuristic_assess(candidate=risky), heuristic_assess(candidate=calm)
    assert a.risk > b.risk and a.revenue > b.revenue
    assert b.effort < a.effort or b.category == Category.QUICK_FIX
    assert a.scored_by == "heuristic" and a.analysis["method"] == "heuristic (no LLM)"


def scored(title: str, *, category: str, score_bias: int) -> Scored:
    effort = 2 if category == Category.QUICK_FIX else 7
    assessment = Assessment(
        what=title, why="", how="", files=[], risk_notes="", time_estimate="1 day", impact=min(10, 1 + score_bias),
        effort=effort, risk=2, edge=5, revenue=3, category=category, analysis={}, scored_by="heuristic",
    )  # fmt: skip
    return Scored(candidate=Candidate(origin="news", title=title, text="", strength=0.5), assessment=assessment)


WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()


def test_five_and_five_best_first():
    pool = [scored(f"{w} feature", category=Category.HIGH_IMPACT, score_bias=i) for i, w in enumerate(WORDS[:7])]
    pool += [scored(f"{w} quick", category=Category.QUICK_FIX, score_bias=i) for i, w in enumerate(WORDS[7:])]
    chosen = top_select(scored=pool, blocked_titles=[])
    assert len(chosen) == 10
    high = [s.assessment for s in chosen if s.assessment.category == Category.HIGH_IMPACT]
    quick = [s.assessment for s in chosen if s.assessment.category == Category.QUICK_FIX]
    assert len(high) == 5 and len(quick) == 5
    assert [a.what.split()[0] for a in high] == ["golf", "foxtrot", "echo", "delta", "charlie"]


def test_a_short_category_is_filled_from_the_other():
    pool = [scored(f"{w} big", category=Category.HIGH_IMPACT, score_bias=i) for i, w in enumerate(WORDS[:9])]
    pool += [scored("kilo quick", category=Category.QUICK_FIX, score_bias=1)]
    chosen = top_select(scored=pool, blocked_titles=[])
    assert len(chosen) == 10
    assert sum(s.assessment.category == Category.QUICK_FIX for s in chosen) == 1


@pytest.mark.django_db
def test_duplicates_of_open_or_rejected_proposals_and_of_each_other_are_skipped():
    run = ResearchRun.objects.create(day=timezone.localdate())
    common = dict(run=run, day=timezone.localdate(), origin="news", what="x", why="x", how="x", impact=5, effort=5,
                  risk=5, edge=5, revenue=5, score=0, category=Category.HIGH_IMPACT, scored_by="heuristic")  # fmt: skip
    Proposal.objects.create(title="Dark mode for the dashboard", status=ProposalStatus.DISMISSED, **common)
    Proposal.objects.create(title="Export reports to CSV", status=ProposalStatus.PROPOSED, **common)
    Proposal.objects.create(title="Passkey login", status=ProposalStatus.SHIPPED, **common)
    blocked = list(Proposal.objects.filter(BLOCKING).values_list("title", flat=True))
    assert sorted(blocked) == ["Dark mode for the dashboard", "Export reports to CSV"]
    pool = [
        scored("Dashboard dark mode", category=Category.HIGH_IMPACT, score_bias=9),
        scored("Export reports as CSV files", category=Category.QUICK_FIX, score_bias=9),
        scored("Realtime cursors for editors", category=Category.HIGH_IMPACT, score_bias=5),
        scored("Realtime cursors for the editors", category=Category.HIGH_IMPACT, score_bias=4),
        scored("Passkey login support", category=Category.QUICK_FIX, score_bias=3),
    ]
    chosen = [s.assessment.what for s in top_select(scored=pool, blocked_titles=blocked)]
    assert chosen == ["Passkey login support", "Realtime cursors for editors"]  # best score first
