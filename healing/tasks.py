"""Celery tasks: thin shells that load ids and call the logic modules."""

from celery import shared_task
from django.db import DatabaseError

from healing.ingest import outbox, retention
from healing.loop import pipeline, quick_fix, rca, sweep
from kaizen_site.llm import LLMError


# LLMError reaches here only when transient (rate-limited, overloaded, unreachable): try later.
@shared_task(acks_late=True, autoretry_for=(DatabaseError, LLMError), retry_backoff=5, max_retries=6)
def process_issue(issue_id: str) -> bool:
    # The queue (P0–P3) is chosen by the sender from the issue's severity: see healing.ingest.outbox.
    return pipeline.issue_process(issue_id=issue_id)


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=5, max_retries=6)
def draft_rca(issue_id: str, change_id: int | None) -> bool:
    # Sent by rca.rca_draft_later; drafting twice returns the first draft.
    return rca.rca_draft_task(issue_id=issue_id, change_id=change_id)


@shared_task(acks_late=True, expires=3600)
def process_p3_batch() -> int:
    return pipeline.p3_batch_process()


@shared_task(acks_late=True, expires=60)
def reenqueue_pending() -> int:
    return outbox.reenqueue_pending()


@shared_task(acks_late=True, expires=3600)
def trim_occurrences() -> int:
    return retention.occurrences_trim()


@shared_task(acks_late=True, expires=55)
def sweep_stage_deadlines() -> dict[str, int]:
    # Beat, every minute, on the ops queue; expires before the next one so a stopped worker's
    # backlog of sweeps does not pile up.
    return sweep.stage_deadlines_sweep()


@shared_task(acks_late=True, autoretry_for=(DatabaseError, LLMError), retry_backoff=5, max_retries=6)
def resume_issue(issue_id: str, stage: str, attempt: int) -> str:
    # Sent by the sweep on the issue's severity queue; a stale attempt does nothing.
    return sweep.issue_resume(issue_id=issue_id, stage=stage, attempt=attempt)


@shared_task(acks_late=True, expires=55)
def start_scheduled_changes() -> list[str]:
    # Beat, every minute: drafts the owner scheduled for later (Quick Fix) go to work when due.
    return quick_fix.changes_scheduled_start()
