"""Owner alerts from research. They are recorded the way the project records owner alerts (an
`owner.alert` audit entry, which the notification channels subscribe to); each alert is one
function here so the delivery seam can change in one place."""

import logging

from healing.audit import audit_record

from .models import Source

logger = logging.getLogger(__name__)
AUTOMATIC = "kaizen"
ENHANCEMENT_READY = "ENHANCEMENT_READY"
SOURCE_DISABLED = "RESEARCH_SOURCE_DISABLED"


def proposals_ready_alert(*, day: str, high_impact: int, quick_fix: int, top_title: str) -> None:
    message = f"{high_impact + quick_fix} enhancement proposals are ready for {day}"
    if top_title:
        message += f"; top: {top_title}"
    audit_record(
        actor=AUTOMATIC,
        action="owner.alert",
        target=f"research:{day}",
        detail={
            "kind": ENHANCEMENT_READY, "message": message, "high_impact": high_impact, "quick_fix": quick_fix,
        },
    )  # fmt: skip
    logger.info("enhancement proposals ready", extra={"day": day, "count": high_impact + quick_fix})


def source_disabled_alert(*, source: Source, reason: str) -> None:
    audit_record(
        actor=AUTOMATIC,
        action="owner.alert",
        target=f"research-source:{source.pk}",
        detail={"kind": SOURCE_DISABLED, "message": f"Research source {source.name} was disabled: {reason}"},
    )
    logger.warning("research source disabled", extra={"source": source.name, "reason": reason})
