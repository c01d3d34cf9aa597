"""Other users meeting the bug while its fix is verified is expected (nobody has the fix yet) and
must not fail the fix; a report the replays themselves caused must."""

import orjson
import pytest
from django.test import Client

from flags.models import PromotionPolicy
from healing.loop import verify
from healing.models import Change, ChangeStatus, Occurrence, Project
from tests.healing.loop.test_pipeline import GENERATE, report, stages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    PromotionPolicy.objects.update_or_create(
        project=None, defaults={"max_auto_exposure": 100, "blocked_from_hour": None, "blocked_to_hour": None}
    )
    return sandbox


@pytest.fixture
def report_during_replays(monkeypatch):
    """Posts one report of the same bug, as `user`, while the third replay runs."""

    def arrange(user: str) -> None:
        real, calls = verify.probe_once, []

        def probe_once(**kwargs):
            calls.append(1)
            if len(calls) == 3:
                key = Project.objects.get(slug="demo").keys.get().public_key
                body = {**GENERATE, "user": {"id": user}}
                answer = Client().post("/api/v1/issues", data=orjson.dumps(body), content_type="application/json",
                                       HTTP_X_KAIZEN_KEY=key)  # fmt: skip
                assert answer.status_code == 202
            return real(**kwargs)

        monkeypatch.setattr(verify, "probe_once", probe_once)

    return arrange


def test_another_user_meeting_the_bug_meanwhile_does_not_fail_the_fix(sandbox, report_during_replays):
    report_during_replays("bob")
    issue = report(GENERATE)

    assert Occurrence.objects.filter(issue=issue, user_id="bob").exists()  # it did arrive mid-verification
    assert stages(issue)[-2:] == ["verifying", "deployed"]
    verification = Change.objects.get(issue=issue).scorecard["verification"]
    assert verification["passed"] is True and verification["summary"] == "10/10 replays passed"


def test_a_report_the_replays_caused_fails_the_fix(sandbox, report_during_replays):
    report_during_replays(verify.GENERIC_ACCOUNT)
    issue = report(GENERATE)

    assert stages(issue)[-2:] == ["verifying", "aborted"]
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.ABORTED
    assert "1 new occurrences of the issue caused by the replays" in change.scorecard["verification"]["summary"]
