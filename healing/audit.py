"""The audit log: every owner action and every automatic action, one row each."""

from typing import Any

from healing.models import AuditEntry

AUTOMATIC = "kaizen"  # the actor of actions Kaizen takes by itself
NOT_A_PROBLEM = "issue.not_a_problem"  # the owner closed an issue as a false positive (see /metrics)


def audit_record(*, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry.objects.create(actor=actor, action=action, target=target, detail=detail or {})
