"""The healing pipeline for one issue. Foundation stage: record detection on the timeline.

Idempotent by construction: the timeline gets an event only when the issue's stage differs from
the last one recorded, so a redelivered or duplicate task changes nothing.
"""

import logging

from django.db import transaction

from .models import Issue, IssueEvent, Stage

logger = logging.getLogger("kaizen.pipeline")

USER_MESSAGES = {
    Stage.DETECTED: "We noticed a problem and are looking into it.",
}


def issue_process(*, issue_id: str) -> bool:
    """Returns True when this call moved the issue's timeline forward."""
    with transaction.atomic():
        issue = Issue.objects.select_for_update().filter(id=issue_id).first()
        if issue is None:
            logger.warning("process_issue for an unknown issue", extra={"issue_id": issue_id})
            return False
        last_stage = issue.events.order_by("-created_at", "-id").values_list("stage", flat=True).first()
        if last_stage == issue.stage:
            return False
        IssueEvent.objects.create(
            issue=issue,
            stage=issue.stage,
            message=USER_MESSAGES.get(issue.stage, ""),
            detail=f"{issue.type} {issue.severity}: {issue.occurrence_count} occurrences, {issue.affected_users} users",
        )
    return True
