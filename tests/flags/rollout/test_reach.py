"""A user who meets a bug while its fix is rolling out gets the fix at once, as the canary user
did: their session is told "Fixed", and it must be true for them."""

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from flags.models import FlagChange, Override, Rollout
from flags.rollout.engine import Outcome, rollout_advance
from flags.rollout.health import rollout_health
from healing.ingest import store
from healing.models import AuditEntry, Issue, SessionEvent, Stage
from tests.flags.rollout.support import AFFECTED, CANARY, FULL, PARTIAL, enabled_for, users_in_bucket
from tests.healing.stream.conftest import session_new

pytestmark = pytest.mark.django_db


def report(issue: Issue, *, user_id: str = "", session_id: str = "", at: float | None = None) -> None:
    """One report of `issue` stored as the ingest consumer stores it."""
    body = {"message": "checkout failed"}
    if user_id:
        body["user"] = {"id": user_id}
    if session_id:
        body["session_id"] = session_id
    record = {
        "event_id": str(uuid.uuid4()), "project_id": issue.project_id, "issue_id": str(issue.pk),
        "fingerprint": issue.fingerprint, "grouping": issue.grouping, "source": "native",
        "received_at": at or time.time(), "report": body,
    }  # fmt: skip
    assert store.reports_store(records=[record]).stored == 1


@pytest.fixture
def deployed(start, issue):
    """The issue's fix in its canary, the issue deployed, as the pipeline leaves them."""
    rollout, at = start()
    Issue.objects.filter(pk=issue.pk).update(stage=Stage.DEPLOYED)
    return rollout, at


def test_a_second_user_who_meets_the_bug_during_the_canary_gets_the_fix_and_is_told_so(deployed, issue, project):
    rollout, _ = deployed
    session = session_new(project=project, name="Erin", user_id="erin")
    assert not enabled_for(rollout.flag, "erin")

    report(issue, user_id="erin", session_id=session.session_id)

    assert enabled_for(rollout.flag, "erin")  # true before the session hears "Fixed"
    told = SessionEvent.objects.get(session=session)
    assert (told.payload["stage"], told.payload["message"].startswith("**Fixed.**")) == ("deployed", True)
    rollout.refresh_from_db()
    assert list(rollout.reached_users) == ["erin"]
    override = Override.objects.get(flag=rollout.flag, user_id="erin")
    assert override.enabled and "during its canary phase" in override.reason
    assert FlagChange.objects.filter(flag=rollout.flag, action="override.set", after__user_id="erin").exists()
    assert AuditEntry.objects.get(action="rollout.reach").detail["users"] == ["erin"]
    assert not enabled_for(rollout.flag, "someone-who-never-met-it")  # still a canary for everyone else


def test_the_canary_user_and_a_user_reached_already_are_left_as_they_are(deployed, issue):
    rollout, _ = deployed
    report(issue, user_id=AFFECTED)
    report(issue, user_id="erin")
    report(issue, user_id="erin")
    rollout.refresh_from_db()
    assert list(rollout.reached_users) == ["erin"]
    assert AuditEntry.objects.filter(action="rollout.reach").count() == 1


def test_in_the_partial_phase_only_users_outside_its_share_need_reaching(deployed, issue, allow_all):
    rollout, at = deployed
    assert rollout_advance(rollout_id=rollout.pk, expected_phase="canary", now=at + CANARY) == Outcome.PROMOTED
    inside = users_in_bucket(rollout.flag, within=10, n=1)[0]
    outside = users_in_bucket(rollout.flag, within=10, n=1, inside=False)[0]
    report(issue, user_id=inside)
    report(issue, user_id=outside)
    rollout.refresh_from_db()
    assert list(rollout.reached_users) == [outside]
    assert enabled_for(rollout.flag, outside)


def test_reports_without_a_user_id_or_of_a_finished_rollout_reach_no_one(deployed, issue, allow_all):
    rollout, at = deployed
    report(issue, session_id="anonymous-tab")
    assert Override.objects.filter(flag=rollout.flag).count() == 1  # the canary's only
    for phase, t in (("canary", at + CANARY), ("partial", at + CANARY + PARTIAL)):
        rollout_advance(rollout_id=rollout.pk, expected_phase=phase, now=t)
    rollout.refresh_from_db()
    assert rollout.phase == "full"
    report(issue, user_id="late")  # everyone has it at 100 %
    rollout.refresh_from_db()
    assert rollout.reached_users == {}


def test_a_reached_users_reports_count_against_the_fix_once_it_has_reached_every_process(deployed, issue):
    rollout, _ = deployed
    report(issue, user_id="erin")
    rollout.refresh_from_db()
    assert rollout_health(rollout=rollout).degraded is False
    report(issue, user_id="erin", at=time.time() + 1)  # sent before her requests saw the fix
    rollout.refresh_from_db()
    assert rollout_health(rollout=rollout, now=timezone.now() + timedelta(seconds=2)).degraded is False
    report(issue, user_id="erin", at=time.time() + 5)  # the fix on, and she meets the bug again
    health = rollout_health(rollout=rollout, now=timezone.now() + timedelta(seconds=6))
    assert health.degraded and health.watched_new == 1


def test_the_reached_users_overrides_end_with_the_rollout(deployed, issue, allow_all):
    rollout, at = deployed
    report(issue, user_id="erin")
    for phase, t in (
        ("canary", at + CANARY),
        ("partial", at + CANARY + PARTIAL),
        ("full", at + CANARY + PARTIAL + FULL),
    ):
        rollout_advance(rollout_id=rollout.pk, expected_phase=phase, now=t)
    assert Rollout.objects.get(pk=rollout.pk).phase == "done"
    assert not Override.objects.filter(flag=rollout.flag).exists()
    assert enabled_for(rollout.flag, "erin")  # at 100 % like everyone


def test_the_console_shows_who_the_canary_reached(deployed, issue, admin_client):
    rollout, _ = deployed
    report(issue, user_id="erin")
    page = admin_client.get("/admin/flags/rollout/").content.decode()
    assert f"1 user ({AFFECTED}) + 1 who met the bug since" in page
    assert "erin" in admin_client.get(f"/admin/flags/rollout/{rollout.pk}/change/").content.decode()
