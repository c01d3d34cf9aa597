"""What the console does goes to the audit log, which belongs to the healing app.

kaizen_site imports no app (pyproject.toml's contracts), so it announces console events on a signal
that healing connects to its audit log (healing.apps); the client address of the request being
served rides in a context variable that the audit log reads for every entry it writes.
"""

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.dispatch import Signal

# Sent with actor, action, target and detail: one audit entry each (healing.audit.audit_record).
console_action = Signal()

_request_ip: ContextVar[str | None] = ContextVar("kaizen_request_ip", default=None)


def request_ip() -> str | None:
    """The client address of the request being served; None in a worker (automatic actions)."""
    return _request_ip.get()


@contextmanager
def serving(ip: str | None):
    token = _request_ip.set(ip or None)
    try:
        yield
    finally:
        _request_ip.reset(token)


def console_audit(*, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    console_action.send(sender=None, actor=actor, action=action, target=target, detail=detail or {})
