"""The audit log: every owner action and every automatic action, one row each."""

from typing import Any

from healing.models import AuditEntry
from kaizen_site.security.audit import request_ip

AUTOMATIC = "kaizen"  # the actor of actions Kaizen takes by itself
NOT_A_PROBLEM = "issue.not_a_problem"  # the owner closed an issue as a false positive (see /metrics)


def audit_record(*, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> AuditEntry:
    """The client's address comes from the request being served (none in a worker: automatic)."""
    return AuditEntry.objects.create(actor=actor, action=action, target=target, detail=detail or {}, ip=request_ip())


def console_action_record(sender, *, actor: str, action: str, target: str, detail: dict[str, Any], **kwargs) -> None:
    """Receives the console's own events (sign-ins, admin changes and actions; kaizen_site.security.audit)."""
    audit_record(actor=actor, action=action, target=target[:200], detail=detail)
