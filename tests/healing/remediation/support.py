"""What the remediation tests share: constants, helpers and fixtures."""

import pytest

from flags.models import Override
from flags.services import flag_create
from healing.models import RemediationRun
from healing.remediation import (
    RemediationContext,
    remediation_plan_validate,
    remediation_step_run,
)
from tests.factories import IssueFactory

HOOK_URL = "https://owner.example.com/kaizen/resync"
HOOK_SECRET = "a-long-enough-hook-secret"


@pytest.fixture
def issue(project):
    return IssueFactory(project=project, type="SILENT_FAILURE")


@pytest.fixture
def context(issue):
    return RemediationContext(issue=issue, user_id="alice")


@pytest.fixture
def flag(project):
    return flag_create(project=project, key="generate-retry", enabled=True, actor="test")


def run(action: str, params: dict, context: RemediationContext) -> RemediationRun:
    [step] = remediation_plan_validate([{"action": action, "params": params}])
    return remediation_step_run(step=step, context=context)


def override_of(flag, user_id="alice"):
    return Override.objects.filter(flag=flag, user_id=user_id).first()
