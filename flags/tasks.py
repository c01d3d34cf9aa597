"""Celery tasks of the rollout engine: thin shells over flags.rollout.engine, on the ops queue."""

from celery import shared_task
from django.db import DatabaseError

from flags.rollout import engine as rollout


@shared_task(queue=rollout.QUEUE, acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def rollout_advance(rollout_id: int, expected_phase: str) -> str:
    # Sent with the phase's duration as countdown; a duplicate, a redelivery or a task for a
    # phase already left does nothing (rollout.rollout_advance claims on the expected phase).
    return str(rollout.rollout_advance(rollout_id=rollout_id, expected_phase=expected_phase, resend_if_early=True))


@shared_task(queue=rollout.QUEUE, acks_late=True, expires=25)
def rollouts_sweep() -> dict[str, int]:
    # Beat, every 30 s: watches every phase in progress and ends any whose ETA task was lost.
    # Expires before the next one is due, so sweeps queued behind a stopped worker do not pile up.
    return rollout.rollouts_sweep()
