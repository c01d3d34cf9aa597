"""The patch executor: a Change's code patch submitted, built and approved."""

import hashlib
import hmac
import json

import pytest
import requests
import responses

from healing.changes import patch_executor
from healing.changes.lifecycle import (
    ChangeError,
    PatchSpec,
)
from healing.changes.patch_executor import change_approve_patch, change_submit_patch
from healing.models import AuditEntry, Change, PatchState
from kaizen_site import webhooks
from tests.healing.changes.support import DIFF, EXECUTOR, SECRET, S, at_status

pytestmark = pytest.mark.django_db


# --- The patch executor -------------------------------------------------------------------------


def test_patch_goes_to_the_executor_signed(executor, in_review):
    executor.add(responses.POST, EXECUTOR, json={"build_id": "build-42"}, status=202)
    change = change_submit_patch(change=in_review, actor="kaizen")

    (call,) = executor.calls
    body = call.request.body
    assert call.request.headers["X-Kaizen-Signature"] == (
        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.req_kwargs["timeout"] == (webhooks.CONNECT_TIMEOUT, patch_executor.EXECUTOR_READ_TIMEOUT)
    sent = json.loads(body)
    assert sent["change"] == "KAIZ-001" and sent["patch"] == {"summary": "Longer", "diff": DIFF}
    assert sent["component"] == "checkout" and sent["flag_key"] == "fix-timeout"
    assert sent["issue"] == str(in_review.issue_id)
    assert call.request.headers["X-Kaizen-Delivery"] == sent["delivery"]

    stored = Change.objects.get(pk=change.pk)
    assert (stored.patch_state, stored.patch_build_id, stored.patch_error) == (PatchState.SUBMITTED, "build-42", "")
    assert stored.patch_submitted_at is not None and stored.status == S.IN_REVIEW
    audit = AuditEntry.objects.get(action="change.patch.submit")
    assert audit.detail == {"delivery": sent["delivery"], "build_id": "build-42"}

    with pytest.raises(ChangeError, match="accepted by the executor"):
        change_submit_patch(change=change, actor="kaizen")  # never sent twice
    assert len(executor.calls) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 500, "body": "database down"}, "HTTP 500: database down (transient)"),
        ({"body": requests.exceptions.ReadTimeout("slow")}, "did not answer within 30 s (transient)"),
        ({"body": requests.exceptions.ConnectionError("refused")}, "could not reach the executor"),
        ({"status": 200, "body": "<html>ok</html>"}, "not with JSON: <html>ok</html> (permanent)"),
        ({"status": 200, "json": {"queued": True}}, "has no build_id"),
        ({"status": 403, "body": "bad signature"}, "HTTP 403: bad signature (permanent)"),
        ({"status": 302, "headers": {"Location": "/elsewhere"}}, "HTTP 302"),
    ],
)
def test_executor_failures_are_recorded_on_the_change(executor, in_review, answer, error):
    executor.add(responses.POST, EXECUTOR, **answer)
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert len(executor.calls) == 1
    stored = Change.objects.get(pk=change.pk)
    assert stored.patch_state == PatchState.FAILED and stored.patch_build_id == ""
    assert error in stored.patch_error
    assert stored.status == S.IN_REVIEW
    assert error in AuditEntry.objects.get(action="change.patch.fail").detail["error"]


def test_a_failed_patch_can_be_sent_again(executor, in_review):
    executor.add(responses.POST, EXECUTOR, status=503)
    change = change_submit_patch(change=in_review, actor="kaizen")
    executor.replace(responses.POST, EXECUTOR, json={"build_id": 7})
    change = change_submit_patch(change=change, actor="kaizen")
    assert (change.patch_state, change.patch_build_id, change.patch_error) == (PatchState.SUBMITTED, "7", "")
    first, second = (json.loads(call.request.body) for call in executor.calls)
    assert first["delivery"] == second["delivery"]  # the executor can tell it is the same patch


def test_no_patch_is_sent_unsigned(executor, in_review, settings):
    settings.KAIZEN_PATCH_EXECUTOR_SECRET = ""
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert executor.calls == [] or len(executor.calls) == 0
    assert change.patch_state == PatchState.FAILED and "never sent unsigned" in change.patch_error


def test_without_an_executor_the_patch_waits_for_the_owner(no_executor, in_review):
    change = change_submit_patch(change=in_review, actor="kaizen")
    assert len(no_executor.calls) == 0
    assert (change.status, change.patch_state) == (S.IN_REVIEW, PatchState.AWAITING_APPROVAL)
    assert AuditEntry.objects.get(action="change.patch.wait").detail["why"] == patch_executor.NOT_CONFIGURED

    change = change_approve_patch(change=change, actor="owner")
    assert (change.patch_state, change.patch_approved_by) == (PatchState.APPROVED, "owner")
    assert change.patch_approved_at is not None and len(no_executor.calls) == 0
    with pytest.raises(ChangeError, match="nothing to approve"):
        change_approve_patch(change=change, actor="owner")


def test_approving_sends_the_patch_when_an_executor_is_configured(executor, in_review):
    executor.add(responses.POST, EXECUTOR, json={"build_id": "b-1"})
    change = change_approve_patch(change=in_review, actor="owner")
    assert (change.patch_state, change.patch_build_id, change.patch_approved_by) == (
        PatchState.SUBMITTED, "b-1", "owner"
    )  # fmt: skip


@pytest.mark.parametrize(("status", "patch", "message"), [
    (S.IN_PROGRESS, True, "while its change is in_review"),
    (S.IN_REVIEW, False, "has no code patch"),
])  # fmt: skip
def test_a_patch_is_submitted_only_in_review(executor, status, patch, message):
    change = at_status(status, patch=PatchSpec(summary="s", diff=DIFF) if patch else None)
    with pytest.raises(ChangeError, match=message):
        change_submit_patch(change=change, actor="kaizen")
    assert len(executor.calls) == 0
