"""What a rollout's moves mean for healing: the Change's lifecycle, the issue's severity and its
work sent again after a rollback, and the outcomes once the rollout's record is committed.

flags.rollout sends the signals inside its own transaction; HealingConfig.ready connects these
receivers, so flags never imports the loop (the rule the import contracts enforce).
"""

import logging
from typing import Any

from django.db import transaction

from flags.models import Rollout
from flags.rollout import signals
from healing.changes.lifecycle import ChangeTransitionError, change_transition
from healing.ingest import outbox
from healing.ingest.classify import Impact, severity_raise
from healing.loop import outcomes
from healing.models import Change, ChangeStatus, EnqueueState, Issue, RiskLevel
from healing.remediation import raw_plan_risk

logger = logging.getLogger("kaizen.rollout")


def _after_commit(hook, **kwargs) -> None:
    """The issue's side of a finished rollout (resolved and learned, or escalated and its pattern
    weakened) runs once the rollout's own record is committed. Its moves are claims, so running
    one twice is harmless; a failure there is logged and cannot undo the rollout (robust), least
    of all a kill."""
    transaction.on_commit(lambda: hook(**kwargs), robust=True)


def rollout_started(*, change: Change, actor: str, why: str, **_: Any) -> None:
    change_transition(change=change, to=ChangeStatus.CANARY, actor=actor, why=why)


def rollout_completed(*, change: Change, actor: str, why: str, **_: Any) -> None:
    change.status = Change.objects.filter(pk=change.pk).values_list("status", flat=True).get()
    if change.status == ChangeStatus.CANARY:
        change_transition(change=change, to=ChangeStatus.COMPLETE, actor=actor, why=f"Rolled out: {why}")
    _after_commit(outcomes.change_completed, change_id=change.pk)


def rollout_rolled_back(*, rollout: Rollout, change: Change, actor: str, why: str, now, **_: Any) -> None:
    current = Change.objects.get(pk=change.pk)
    if current.status != ChangeStatus.ABORTED:
        try:
            change_transition(change=current, to=ChangeStatus.ABORTED, actor=actor, why=f"Rolled back: {why}")
        except ChangeTransitionError as exc:  # complete is final: the flag is off all the same
            logger.warning("rolled back change not aborted: %s", exc)
    if rollout.issue_id:
        # The severity only, one level: users exposed to the fix met a degradation. The issue's
        # stage (and what its user is told) is moved by outcomes.change_rolled_back, after commit.
        severity_raise(issue_id=rollout.issue_id, impact=Impact.ROLLBACK, actor=actor,
                       why=f"Rollout of {change.key} rolled back: {why}")  # fmt: skip
        Issue.objects.filter(pk=rollout.issue_id).update(enqueue_state=EnqueueState.PENDING, enqueued_at=now)
        # As the store does: pending in this transaction, published after commit; if the broker
        # is down the outbox's re-enqueue (beat) sends it later.
        issue_id = str(rollout.issue_id)
        severity = Issue.objects.filter(pk=rollout.issue_id).values_list("severity", flat=True).get()
        transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue={issue_id: severity}))
    _after_commit(outcomes.change_rolled_back, change_id=change.pk, why=why)


def plan_risk(*, plan: Any, **_: Any) -> RiskLevel:
    return raw_plan_risk(plan)


def receivers_connect() -> None:
    """Called once, from HealingConfig.ready; the dispatch uids make a second call harmless."""
    for signal, receiver in (
        (signals.rollout_started, rollout_started),
        (signals.rollout_completed, rollout_completed),
        (signals.rollout_rolled_back, rollout_rolled_back),
        (signals.plan_risk_requested, plan_risk),
    ):
        signal.connect(receiver, sender=None, weak=False, dispatch_uid=f"healing.loop.rollouts.{receiver.__name__}")
