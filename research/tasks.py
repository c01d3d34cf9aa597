"""Celery shells. A daily run fans out one task per source on the `research` queue, so any number
of `routine` workers share them and worker concurrency bounds how many run at once. The source
task that reports last runs the finishing step (scoring, alert): a chord counted in the database,
because the project keeps no result backend; a late sweep finishes a run whose tasks were lost.
"""

from celery import shared_task
from django.db import transaction

from .collect import source_collect
from .models import ResearchRun, Source
from .run import run_finish, run_open, run_ready

FETCH = "research.tasks.fetch_source"
FINISH = "research.tasks.finish"
FINISH_ANYWAY_SECONDS = 30 * 60  # every source task has a time limit well below this


@shared_task(name="research.tasks.daily_run", queue="research")
def daily_run() -> int:
    ids = list(Source.objects.filter(enabled=True).values_list("pk", flat=True))
    run = run_open(trigger="schedule", expected=len(ids))

    def publish() -> None:
        for source_id in ids:
            fetch_source.apply_async(args=[run.pk, source_id])
        finish.apply_async(args=[run.pk], countdown=FINISH_ANYWAY_SECONDS if ids else 0)

    transaction.on_commit(publish)
    return run.pk


@shared_task(name=FETCH, queue="research", acks_late=True)
def fetch_source(run_id: int, source_id: int) -> str:
    source = Source.objects.filter(pk=source_id).first()
    run = ResearchRun.objects.filter(pk=run_id).first()
    if source is None or run is None:
        return "gone"
    outcome = source_collect(source=source, run=run).outcome
    if run_ready(run=run):
        finish.apply_async(args=[run.pk])
    return outcome


@shared_task(name=FINISH, queue="research", acks_late=True)
def finish(run_id: int) -> int:
    run = ResearchRun.objects.filter(pk=run_id).first()
    return len(run_finish(run=run)) if run is not None else 0
