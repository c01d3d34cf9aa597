"""The periodic work and the caches no request path exercises: the daily P3 batch, occurrence
retention, and the key cache with a real time-to-live."""

import orjson
import pytest
from django.conf import settings
from django.test import Client

from healing import projects
from healing.ingest import retention
from healing.loop import pipeline
from healing.models import Issue, IssueEvent, Occurrence, ProjectKey, Severity, Stage
from kaizen_site.celery import app as celery_app
from tests.factories import IssueFactory, OccurrenceFactory, ProjectKeyFactory
from tests.healing.loop.test_pipeline import GENERATE, stages

# --- The daily P3 batch -------------------------------------------------------------------------


def _heal_stages(issue: Issue) -> list[str]:
    return list(IssueEvent.objects.filter(issue=issue).exclude(stage=Stage.DETECTED).values_list("stage", flat=True))


def test_p3_waits_for_the_daily_batch_which_heals_only_waiting_p3_issues(db):
    waiting = [IssueFactory(severity=Severity.P3, title=f"Tooltip misaligned {n}") for n in range(3)]
    urgent = IssueFactory(severity=Severity.P2, project=waiting[0].project)
    handled = IssueFactory(severity=Severity.P3, stage=Stage.ESCALATED, project=waiting[0].project)

    for issue in waiting:
        assert pipeline.issue_process(issue_id=str(issue.pk)) is True  # detection recorded...
    assert [Issue.objects.get(pk=i.pk).stage for i in waiting] == [Stage.DETECTED] * 3  # ...healing waits
    assert not any(_heal_stages(i) for i in waiting)

    assert pipeline.p3_batch_process(limit=2) == 2
    assert sorted(bool(_heal_stages(i)) for i in waiting) == [False, True, True]
    assert pipeline.p3_batch_process() == 1
    for issue in waiting:
        issue.refresh_from_db()
        # No pattern and no LLM: the issue goes to a person, but it went through diagnosis first.
        assert issue.stage != Stage.DETECTED
        assert _heal_stages(issue)[0] == Stage.DIAGNOSING
    assert pipeline.p3_batch_process() == 0  # a second run (beat fired twice) finds nothing
    assert (Issue.objects.get(pk=urgent.pk).stage, _heal_stages(urgent)) == (Stage.DETECTED, [])
    assert (Issue.objects.get(pk=handled.pk).stage, _heal_stages(handled)) == (Stage.ESCALATED, [])


def test_p3_batch_task_is_scheduled_daily_and_runs_on_the_p3_queue(db, celery_eager):
    from healing import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["p3-daily-batch"]
    assert entry["task"] == tasks.process_p3_batch.name
    assert entry["schedule"] == 24 * 3600
    # Up to 500 healings in one task: it must not hold the worker that serves P0 and P1.
    route = celery_app.amqp.router.route(entry.get("options", {}), entry["task"], (), {})
    assert route["queue"].name == "P3"
    issue = IssueFactory(severity=Severity.P3)
    assert tasks.process_p3_batch.delay().get() == 1
    assert Issue.objects.get(pk=issue.pk).stage != Stage.DETECTED


@pytest.mark.django_db(transaction=True)
def test_the_daily_batch_heals_a_p3_issue_through_verification(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    key = ProjectKey.objects.get(project__slug="demo").public_key
    response = Client().post(
        "/api/v1/issues", data=orjson.dumps(GENERATE), content_type="application/json", HTTP_X_KAIZEN_KEY=key
    )
    assert response.status_code == 202, response.content
    issue = Issue.objects.get(pk=response.json()["issue_id"])
    Issue.objects.filter(pk=issue.pk).update(severity=Severity.P3, base_severity=Severity.P3)  # a minor problem
    pipeline.issue_process(issue_id=str(issue.pk))
    assert stages(issue) == ["detected"]

    assert pipeline.p3_batch_process() == 1
    issue.refresh_from_db()
    assert issue.stage == Stage.DEPLOYED
    assert stages(issue) == ["detected", "diagnosing", "root_cause_found", "fixing", "verifying", "deployed"]
    assert issue.changes.get().scorecard["verification"]["summary"] == "10/10 replays passed"


# --- Retention ----------------------------------------------------------------------------------


def test_trim_keeps_the_newest_occurrences_of_crowded_issues_only(db):
    crowded = IssueFactory(occurrence_count=5)
    quiet = IssueFactory(occurrence_count=2, project=crowded.project)
    rows = [OccurrenceFactory(issue=crowded) for _ in range(5)]
    quiet_rows = {OccurrenceFactory(issue=quiet).pk for _ in range(2)}

    assert retention.occurrences_trim(keep=3) == 2
    assert set(Occurrence.objects.filter(issue=crowded).values_list("pk", flat=True)) == {r.pk for r in rows[2:]}
    assert set(Occurrence.objects.filter(issue=quiet).values_list("pk", flat=True)) == quiet_rows
    # The issue's counts are history, not what happens to be stored.
    assert Issue.objects.get(pk=crowded.pk).occurrence_count == 5
    assert retention.occurrences_trim(keep=3) == 0


def test_trim_task_uses_the_setting_and_is_scheduled(db, settings, celery_eager):
    from healing import tasks

    settings.KAIZEN_OCCURRENCES_PER_ISSUE = 1
    issue = IssueFactory()
    newest = [OccurrenceFactory(issue=issue) for _ in range(3)][-1]
    assert tasks.trim_occurrences.delay().get() == 2
    assert list(Occurrence.objects.values_list("pk", flat=True)) == [newest.pk]
    entry = settings.CELERY_BEAT_SCHEDULE["trim-occurrences"]
    assert (entry["task"], entry["schedule"]) == (tasks.trim_occurrences.name, 3600)


def test_a_resent_report_after_trimming_is_still_stored_once(post_report, direct_mode):
    """Trimming keeps the newest rows, so the event id a client resends (it just sent it) is
    still there for the idempotency check."""
    ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(4)]
    for event_id in ids:
        assert post_report({"message": "Export failed", "event_id": event_id}).status_code == 202
    assert retention.occurrences_trim(keep=2) == 2
    assert post_report({"message": "Export failed", "event_id": ids[-1]}).status_code == 202
    issue = Issue.objects.get()
    assert (issue.occurrence_count, Occurrence.objects.count()) == (4, 2)
    assert sorted(str(e) for e in Occurrence.objects.values_list("event_id", flat=True)) == ids[2:]


# --- The key cache with a time-to-live ----------------------------------------------------------


class Clock:
    now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key_clock(monkeypatch, settings):
    """A 30-second key cache (the shipped default is 5 s, the test settings' 0) on a clock the test moves."""
    settings.KAIZEN_KEY_CACHE_SECONDS = 30
    settings.KAIZEN_INGEST_MODE = "stream"  # the accepted path touches no database: any query is the key look-up
    clock = Clock()
    monkeypatch.setattr(projects._keys, "timer", clock)
    return clock


REPORT = {"message": "Export failed"}


def test_a_revoked_key_works_until_the_ttl_then_is_refused(
    post_report, project_key, key_clock, ingest_written, django_assert_num_queries
):
    assert post_report(REPORT).status_code == 202
    ProjectKey.objects.filter(pk=project_key.pk).update(is_active=False)  # revoked by another process
    key_clock.now += 29
    with django_assert_num_queries(0):  # a cached hit does not ask the database
        assert post_report(REPORT).status_code == 202
    key_clock.now += 2
    response = post_report(REPORT)
    assert (response.status_code, response.json()["error"]) == (403, "revoked_key")
    assert ingest_written() == {"queued": 2, "occurrences": 2, "issues": 1}


def test_an_unknown_key_is_cached_too_until_the_ttl(client, project, key_clock, drain):
    public_key = "f" * 32

    def post():
        return client.post("/api/v1/issues", data=orjson.dumps(REPORT), content_type="application/json",
                           HTTP_X_KAIZEN_KEY=public_key)  # fmt: skip

    assert post().status_code == 401
    ProjectKeyFactory(project=project, public_key=public_key)  # issued by another process
    assert post().status_code == 401
    key_clock.now += 31
    assert post().status_code == 202
    drain()
    assert Occurrence.objects.get().issue.project_id == project.id


def test_rotating_in_this_process_refuses_the_old_key_at_once(post_report, project_key, project, key_clock):
    assert post_report(REPORT).status_code == 202
    issued = projects.key_rotate(project=project, actor="alice")
    response = post_report(REPORT)
    assert (response.status_code, response.json()["error"]) == (403, "revoked_key")
    assert post_report(REPORT, key=issued.key.public_key).status_code == 202
    assert ProjectKey.objects.get(pk=project_key.pk).is_active is False
