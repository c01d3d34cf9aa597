"""What the rollout tests share: constants, helpers and fixtures."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from flags.evaluate import bucket, flag_enabled, snapshot_forget
from flags.models import PromotionPolicy, RolloutStep
from flags.rollout.start import rollout_start
from healing.changes.lifecycle import change_create
from healing.models import Change, ChangeStatus
from tests.factories import IssueFactory, OccurrenceFactory

ROOT = Path(__file__).resolve().parents[3]
AFFECTED = "user-42"
KEY = "fix-checkout"
CANARY, PARTIAL, FULL = timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=30)


@pytest.fixture
def issue(project):
    issue = IssueFactory(project=project, occurrence_count=1)
    OccurrenceFactory(
        issue=issue,
        user_id=AFFECTED,
        received_at=timezone.now() - timedelta(hours=2),
        payload={"message": "checkout failed", "tags": {"plan": "pro", "browser": "firefox"},
                 "state": {"config_version": 7, "cart": {"items": 3}}},
    )  # fmt: skip
    return issue


@pytest.fixture
def allow_all():
    """A policy that lets every promotion through: the tests of the engine itself use it."""
    return PromotionPolicy.objects.create(max_auto_exposure=100)


def verified_change(*, issue=None, flag_key=KEY, **fields) -> Change:
    change = change_create(title="Fix the checkout", severity="P2", actor="alice", issue=issue, flag_key=flag_key,
                           **fields)  # fmt: skip
    Change.objects.filter(pk=change.pk).update(status=ChangeStatus.IN_REVIEW)  # verified: set-up, not a transition
    change.refresh_from_db()
    return change


@pytest.fixture
def start(make_flag, issue):
    """Start a rollout of a verified change for `issue`; returns (rollout, start time)."""

    def run(*, at=None, change=None, **kwargs):
        make_flag(key=KEY)
        at = at or timezone.now()
        return rollout_start(change=change or verified_change(issue=issue), actor="kaizen", now=at, **kwargs), at

    return run


def phases(rollout) -> list[tuple[str, str]]:
    return list(RolloutStep.objects.filter(rollout=rollout).values_list("from_phase", "to_phase"))


def enabled_for(flag, user_id) -> bool:
    snapshot_forget()
    return flag_enabled(project_id=flag.project_id, key=flag.key, user_id=user_id)


def users_in_bucket(flag, *, within: int, n: int, inside: bool = True) -> list[str]:
    found = []
    for i in range(10_000):
        user_id = f"u{i}"
        if (bucket(group_id=flag.bucket_group, user_id=user_id) <= within) == inside and user_id != AFFECTED:
            found.append(user_id)
            if len(found) == n:
                return found
    raise AssertionError("not enough users")
