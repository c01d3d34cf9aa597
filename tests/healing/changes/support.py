"""What the changes tests share: constants, helpers and fixtures."""

import pytest
import responses

from healing.changes.lifecycle import (
    PatchSpec,
    change_create,
)
from healing.models import Change, ChangeStatus, Component
from tests.factories import IssueFactory

S = ChangeStatus
EXECUTOR = "https://executor.example.com/builds"
SECRET = "executor-secret"  # noqa: S105 - a test value
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-timeout = 1\n+timeout = 5\n"


def new_change(**kwargs) -> Change:
    fields = {"title": "Raise the checkout timeout", "severity": "P2", "actor": "alice", **kwargs}
    return change_create(**fields)


def at_status(status: str, **kwargs) -> Change:
    """A change put straight into `status` (test set-up, not a transition)."""
    change = new_change(**kwargs)
    Change.objects.filter(pk=change.pk).update(status=status)
    change.refresh_from_db()
    return change


@pytest.fixture
def component():
    return Component.objects.create(
        id="checkout", name="Checkout", tier=1, owner="bob", slo={"error_rate": 0.01}, rollback_plan="Flag off."
    )


@pytest.fixture
def executor(settings):
    settings.KAIZEN_PATCH_EXECUTOR_URL = EXECUTOR
    settings.KAIZEN_PATCH_EXECUTOR_SECRET = SECRET
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def no_executor(settings):
    settings.KAIZEN_PATCH_EXECUTOR_URL = ""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock  # nothing registered: any request would fail the test


@pytest.fixture
def in_review(component):
    issue = IssueFactory()
    patch = PatchSpec(summary="Longer", diff=DIFF)
    return at_status(S.IN_REVIEW, component=component, issue=issue, flag_key="fix-timeout", patch=patch)
