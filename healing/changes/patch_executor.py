"""Handing a Change's code patch to the executor: Kaizen never applies one itself.

The patch goes to KAIZEN_PATCH_EXECUTOR_URL as a signed webhook; with no executor configured the
change waits, in review, for its owner to apply the patch and approve it.
"""

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healing.audit import audit_record
from healing.changes.lifecycle import ChangeError, change_target, change_transition
from healing.models import Change, ChangeStatus, PatchState
from kaizen_site.webhooks import WebhookError, webhook_post

S = ChangeStatus

EXECUTOR_READ_TIMEOUT = 30  # seconds: the executor only queues a build
SUBMITTABLE = (PatchState.NONE, PatchState.AWAITING_APPROVAL, PatchState.APPROVED, PatchState.FAILED)
NOT_CONFIGURED = "Patch executor not configured: waiting for the owner's approval"


class PatchExecutorError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(f"{message} ({'transient' if transient else 'permanent'})")


def patch_executor_configured() -> bool:
    return bool(settings.KAIZEN_PATCH_EXECUTOR_URL)


def _patch_delivery(change: Change) -> str:
    # The same for every resend of one patch: the executor deduplicates on it.
    return f"{change.key}:{hashlib.sha256(change.patch_diff.encode()).hexdigest()[:16]}"


def _patch_body(change: Change) -> bytes:
    payload = {
        "delivery": _patch_delivery(change),
        "change": change.key,
        "title": change.title,
        "severity": change.severity,
        "component": change.component_id,
        "issue": str(change.issue_id) if change.issue_id else None,
        "flag_key": change.flag_key or None,
        "patch": {"summary": change.patch_summary, "diff": change.patch_diff},
        "rollback_plan": change.rollback_plan,
        "sent_at": timezone.now().isoformat(),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _post_patch(body: bytes, *, delivery: str) -> str:
    """Send the patch; the executor's build id, or PatchExecutorError."""
    secret = settings.KAIZEN_PATCH_EXECUTOR_SECRET
    if not secret:
        raise PatchExecutorError(
            "KAIZEN_PATCH_EXECUTOR_SECRET is empty: a patch is never sent unsigned", transient=False
        )
    try:
        answer = webhook_post(url=settings.KAIZEN_PATCH_EXECUTOR_URL, body=body, read_timeout=EXECUTOR_READ_TIMEOUT,
                              name="the executor", secret=secret, delivery=delivery)  # fmt: skip
        data = answer.json_object(name="the executor")
    except WebhookError as exc:
        detail = f"{exc.reason}: {exc.text[:300]}" if exc.text else exc.reason
        raise PatchExecutorError(detail, transient=exc.transient) from exc
    build_id = data.get("build_id")
    if not isinstance(build_id, str | int) or isinstance(build_id, bool) or not str(build_id).strip():
        raise PatchExecutorError(f"the executor's answer has no build_id: {answer.text[:300]}", transient=False)
    return str(build_id)


def _patch_check(change: Change) -> None:
    if not change.patch_diff.strip():
        raise ChangeError(f"{change.key} has no code patch.")
    if change.status != S.IN_REVIEW:
        raise ChangeError(f"{change.key} is {change.status}: a patch goes out while its change is in_review.")


def change_submit_patch(*, change: Change, actor: str) -> Change:
    """Hand the patch to the executor (KAIZEN_PATCH_EXECUTOR_URL) and record its build id or the
    error. With no executor the change waits, in review, for the owner's approval."""
    _patch_check(change)
    if not patch_executor_configured():
        with transaction.atomic():
            waiting = Change.objects.filter(pk=change.pk, patch_state__in=(PatchState.NONE, PatchState.FAILED))
            if waiting.update(patch_state=PatchState.AWAITING_APPROVAL, updated_at=timezone.now()):
                audit_record(
                    actor=actor,
                    action="change.patch.wait",
                    target=change_target(change),
                    detail={"why": NOT_CONFIGURED},
                )
        change.refresh_from_db()
        return change

    # Claimed with a conditional UPDATE, outside any transaction held across the HTTP call: two
    # submitters cannot both send, and the row is never locked while the executor answers.
    claimed = Change.objects.filter(pk=change.pk, status=S.IN_REVIEW, patch_state__in=SUBMITTABLE).update(
        patch_state=PatchState.SENDING, updated_at=timezone.now()
    )
    change.refresh_from_db()  # what is sent is the patch as stored now
    if not claimed:
        raise ChangeError(f"{change.key}: its patch is {change.get_patch_state_display()}; not sent again.")
    delivery = _patch_delivery(change)
    outcome: dict[str, Any]
    try:
        build_id = _post_patch(_patch_body(change), delivery=delivery)
    except PatchExecutorError as exc:
        outcome = {"patch_state": PatchState.FAILED, "patch_error": str(exc)}
        detail = {"delivery": delivery, "error": str(exc), "transient": exc.transient}
    else:
        outcome = {"patch_state": PatchState.SUBMITTED, "patch_build_id": build_id, "patch_error": ""}
        detail = {"delivery": delivery, "build_id": build_id}
    now = timezone.now()
    with transaction.atomic():
        Change.objects.filter(pk=change.pk, patch_state=PatchState.SENDING).update(
            **outcome, patch_submitted_at=now, updated_at=now
        )
        action = "change.patch.submit" if outcome["patch_state"] == PatchState.SUBMITTED else "change.patch.fail"
        audit_record(actor=actor, action=action, target=change_target(change), detail=detail)
    change.refresh_from_db()
    return change


def change_approve_patch(*, change: Change, actor: str) -> Change:
    """The owner approves the patch. With an executor configured it is then sent to it;
    without one the owner applies it, and the approval is the record that they did."""
    _patch_check(change)
    now = timezone.now()
    with transaction.atomic():
        approvable = (PatchState.NONE, PatchState.AWAITING_APPROVAL, PatchState.FAILED)
        approved = Change.objects.filter(pk=change.pk, status=S.IN_REVIEW, patch_state__in=approvable).update(
            patch_state=PatchState.APPROVED, patch_approved_by=actor, patch_approved_at=now, updated_at=now
        )
        if not approved:
            change.refresh_from_db()
            raise ChangeError(f"{change.key}: its patch is {change.get_patch_state_display()}; nothing to approve.")
        audit_record(actor=actor, action="change.patch.approve", target=change_target(change), detail={})
    change.refresh_from_db()
    if patch_executor_configured():
        return change_submit_patch(change=change, actor=actor)
    return change


def change_reject_patch(*, change: Change, actor: str, why: str) -> Change:
    """The owner sends the patch back: the change goes back to in_progress for rework (the same
    ticket, with its history), and its patch no longer waits for approval."""
    why = why.strip()
    if not why:
        raise ChangeError("Say why the patch is rejected: the reason goes back with it.")
    _patch_check(change)
    if change.patch_state in (PatchState.SENDING, PatchState.SUBMITTED):
        raise ChangeError(f"{change.key}: its patch is {change.get_patch_state_display()}; it cannot be recalled.")
    with transaction.atomic():
        change = change_transition(change=change, to=S.IN_PROGRESS, actor=actor, why=f"Patch rejected: {why}")
        Change.objects.filter(pk=change.pk).update(patch_state=PatchState.NONE, patch_approved_by="",
                                                   patch_approved_at=None, updated_at=timezone.now())  # fmt: skip
        audit_record(actor=actor, action="change.patch.reject", target=change_target(change), detail={"why": why})
    change.refresh_from_db()
    return change
