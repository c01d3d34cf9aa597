"""A research run: every due source fetched (each on its own, bounded in number at once), then
the day's analysis: feedback themes, proposals, the owner's alert. The Celery path fans the
sources out as tasks (research.tasks); `manage.py research run` and the benchmark use the
thread pool here. Both call the same per-source and finishing functions.
"""

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from .alerts import proposals_ready_alert
from .collect import CollectResult, source_collect
from .feedback import feedback_analyze
from .implement import finished_changes_sweep, scheduled_due
from .models import Category, Proposal, ResearchRun, Source
from .proposals import proposals_make
from .schedule import owner_today

logger = logging.getLogger(__name__)
AUTOMATIC = "kaizen"


@dataclass
class RunReport:
    run: ResearchRun | None
    results: list[CollectResult] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)


def run_open(*, trigger: str, expected: int = 0) -> ResearchRun:
    return ResearchRun.objects.create(day=owner_today(), trigger=trigger, expected=expected)


def run_ready(*, run: ResearchRun) -> bool:
    """Every source sent out has reported (each writes its SourceFetch row, once)."""
    return run.fetches.count() >= run.expected


def sources_select(*, names: Sequence[str] = ()) -> list[Source]:
    sources = Source.objects.all()
    if names:
        sources = sources.filter(name__in=names)
    return list(sources)


def _collect_in_thread(source: Source, run: ResearchRun | None, dry_run: bool, force: bool) -> CollectResult:
    try:
        return source_collect(source=source, run=run, dry_run=dry_run, force=force)
    finally:
        connections.close_all()  # each pool thread has its own connection


def sources_collect_parallel(
    *,
    sources: Sequence[Source],
    run: ResearchRun | None,
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[CollectResult], None] | None = None,
) -> list[CollectResult]:
    """At most KAIZEN_RESEARCH_CONCURRENCY sources at once; a slow one holds one slot, not the run."""
    results = []
    with ThreadPoolExecutor(max_workers=max(1, settings.KAIZEN_RESEARCH_CONCURRENCY)) as pool:
        futures = [pool.submit(_collect_in_thread, s, run, dry_run, force) for s in sources]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if progress:
                progress(result)
    close_old_connections()
    return results


def run_finish(*, run: ResearchRun) -> list[Proposal]:
    """After the sources: feedback themes, proposals, scheduled implementations, the alert.
    Runs once per run: claimed with a conditional UPDATE, so the last source task and the late
    sweep cannot both finish it."""
    if not ResearchRun.objects.filter(pk=run.pk, claimed_at__isnull=True).update(claimed_at=timezone.now()):
        return list(Proposal.objects.filter(run=run))
    finished_changes_sweep()
    scheduled_due(today=run.day, actor=AUTOMATIC)
    feedback_analyze(run=run)
    already = Proposal.objects.filter(day=run.day).exists()
    proposals = proposals_make(run=run, day=run.day)
    fetches = run.fetches.all()
    run.summary = {
        "sources": fetches.count(),
        "errors": fetches.filter(outcome="error").count(),
        "new_items": sum(f.new for f in fetches),
        "proposals": len(proposals),
    }
    run.finished_at = timezone.now()
    run.save(update_fields=["summary", "finished_at"])
    if proposals and not already:
        high = sum(p.category == Category.HIGH_IMPACT for p in proposals)
        best = max(proposals, key=lambda p: p.score)
        proposals_ready_alert(day=str(run.day), high_impact=high, quick_fix=len(proposals) - high, top_title=best.title)
    return proposals


def research_run(
    *,
    names: Sequence[str] = (),
    dry_run: bool = False,
    force: bool = False,
    trigger: str = "command",
    progress: Callable[[CollectResult], None] | None = None,
) -> RunReport:
    sources = sources_select(names=names)
    run = None if dry_run else run_open(trigger=trigger, expected=len(sources))
    results = sources_collect_parallel(sources=sources, run=run, dry_run=dry_run, force=force, progress=progress)
    report = RunReport(run=run, results=results)
    if run is not None:
        report.proposals = run_finish(run=run)
    return report
