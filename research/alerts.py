"""Owner alerts from research, through the one notifications seam."""

import logging

from notifications.owner_alert import EventType, owner_alert

from .models import Source

logger = logging.getLogger(__name__)


def proposals_ready_alert(*, day: str, high_impact: int, quick_fix: int, top_title: str) -> None:
    """The morning's push: P1, so it goes out at once (quiet hours still hold it until they end)."""
    title = f"{high_impact + quick_fix} enhancement proposals are ready"
    body = f"For {day}: {high_impact} high impact, {quick_fix} quick fixes." + (
        f" Top: {top_title}" if top_title else ""
    )
    owner_alert(
        kind=EventType.ENHANCEMENT_READY, severity="P1", target=f"research:{day}", title=title, body=body,
        dedupe_key=f"research:{day}", detail={"high_impact": high_impact, "quick_fix": quick_fix},
    )  # fmt: skip
    logger.info("enhancement proposals ready", extra={"day": day, "count": high_impact + quick_fix})


def source_disabled_alert(*, source: Source, reason: str) -> None:
    owner_alert(
        kind=EventType.SYSTEM_ALERT, severity="P2", target=f"research-source:{source.pk}",
        title=f"Research source {source.name} was disabled", body=reason,
        dedupe_key=f"research-source:{source.pk}:disabled",
    )  # fmt: skip
    logger.warning("research source disabled", extra={"source": source.name, "reason": reason})
