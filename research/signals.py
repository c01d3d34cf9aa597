"""A Change that came from a proposal tells the proposal when it finishes: every status move
writes a PromotionLogEntry, so its creation is the completion event (no edit to healing)."""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from healing.models import ChangeStatus, PromotionLogEntry

from .implement import change_finished


@receiver(post_save, sender=PromotionLogEntry, dispatch_uid="research.change_finished")
def _on_promotion(sender, instance: PromotionLogEntry, created: bool, **kwargs) -> None:
    if created and instance.to_status in (ChangeStatus.COMPLETE, ChangeStatus.ABORTED):
        change_id, status, when = instance.change_id, instance.to_status, instance.created_at
        transaction.on_commit(lambda: change_finished(change_id=change_id, status=status, when=when))
