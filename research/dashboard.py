"""The research figure of the console's dashboard: proposals still waiting for the owner's decision."""

from datetime import datetime
from typing import Any

from .models import Proposal, ProposalStatus
from .schedule import owner_today


def proposal_figures(*, now: datetime) -> dict[str, Any]:
    """Today's proposals not yet implemented, scheduled or dismissed (one indexed count)."""
    return {"pending": Proposal.objects.filter(day=owner_today(now=now), status=ProposalStatus.PROPOSED).count()}
