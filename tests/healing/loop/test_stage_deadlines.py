"""No issue is stranded: every working stage has a deadline, and the sweep resumes the stage's
work once it has passed (the worker running it died), or escalates the issue with the reason."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from healing.demo import product as demo
from healing.loop import pipeline, sweep, verify
from healing.loop.stages import StageMoveError, issue_move
from healing.models import AuditEntry, Change, ChangeStatus, Issue, IssueEvent, Project, Stage
from tests.factories import IssueFactory
from tests.healing.loop.test_pipeline import GENERATE, stages
from tests.processes import database_url

ROOT = Path(__file__).resolve().parents[3]


class WorkerDied(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, no handler sees it."""


@pytest.mark.django_db
def test_stage_moves_follow_the_table_and_set_the_deadline(settings):
    settings.KAIZEN_STAGE_DEADLINES = {**settings.KAIZEN_STAGE_DEADLINES, "diagnosing": 120}
    issue = IssueFactory(stage=Stage.DETECTED, severity="P1")

    with pytest.raises(StageMoveError, match="cannot move from detected to verifying"):
        issue_move(issue=issue, to=Stage.VERIFYING)
    before = timezone.now()
    assert issue_move(issue=issue, to=Stage.DIAGNOSING, detail="why not")
    assert not issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.DIAGNOSING)  # taken already

    issue.refresh_from_db()
    assert issue.stage == Stage.DIAGNOSING and issue.stage_attempts == 0
    assert before + timedelta(seconds=119) < issue.stage_deadline <= timezone.now() + timedelta(seconds=120)
    assert list(IssueEvent.objects.filter(issue=issue).values_list("stage", flat=True)) == ["diagnosing"]
    assert AuditEntry.objects.get(action="issue.move").detail == {"from": "detected", "to": "diagnosing",
                                                                  "why": "why not"}  # fmt: skip
    assert issue_move(issue=issue, to=Stage.ESCALATED)
    issue.refresh_from_db()
    assert issue.stage_deadline is None  # a person's turn: no deadline


def test_the_console_offers_only_the_allowed_moves(admin_client):
    issue = IssueFactory(stage=Stage.VERIFYING)
    page = admin_client.get(f"/admin/healing/issue/{issue.id}/change/")
    offered = [value for value, _ in page.context["adminform"].form.fields["stage"].choices]
    assert offered == ["verifying", "deployed", "mitigated", "aborted", "escalated"]


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    settings.KAIZEN_ROLLOUT_CANARY_SECONDS = settings.KAIZEN_ROLLOUT_PARTIAL_SECONDS = 1
    settings.KAIZEN_ROLLOUT_FULL_SECONDS = 1
    return sandbox


def report_dying_in_verification(monkeypatch) -> Issue:
    """Report the generate failure and process it in a "worker" that dies while verifying."""
    with monkeypatch.context() as patched:
        patched.setattr(verify, "change_verify", lambda **kwargs: (_ for _ in ()).throw(WorkerDied()))
        key = Project.objects.get(slug="demo").keys.get().public_key
        response = Client().post(
            "/api/v1/issues", data=orjson.dumps(GENERATE), content_type="application/json", HTTP_X_KAIZEN_KEY=key
        )
        issue = Issue.objects.get(pk=response.json()["issue_id"])
        with pytest.raises(WorkerDied):
            pipeline.issue_process(issue_id=str(issue.pk))
    issue.refresh_from_db()
    assert issue.stage == Stage.VERIFYING
    return issue


@pytest.mark.django_db(transaction=True)
def test_the_sweep_resumes_verification_past_its_deadline(sandbox, monkeypatch, broker):
    issue = report_dying_in_verification(monkeypatch)
    assert pipeline.issue_process(issue_id=str(issue.pk)) is False  # the redelivered task: stage taken
    assert sweep.stage_deadlines_sweep() == {}  # not due yet

    later = issue.stage_deadline + timedelta(seconds=1)
    assert sweep.stage_deadlines_sweep(now=later) == {"resumed": 1}
    assert sweep.stage_deadlines_sweep(now=later) == {}  # claimed: a second sweep does nothing
    message = orjson.loads(broker.lpop(issue.severity))
    assert message["headers"]["task"] == "healing.tasks.resume_issue"
    assert message["headers"]["argsrepr"] == repr([str(issue.pk), "verifying", 1])

    assert sweep.issue_resume(issue_id=str(issue.pk), stage="verifying", attempt=1) == "resumed"
    assert sweep.issue_resume(issue_id=str(issue.pk), stage="verifying", attempt=1) == "stale"  # moved on

    issue.refresh_from_db()
    change = Change.objects.get(issue=issue)
    assert (issue.stage, change.status) == (Stage.DEPLOYED, ChangeStatus.CANARY)
    assert change.scorecard["verification"]["passed"] is True
    assert stages(issue).count("verifying") == 1


@pytest.mark.django_db(transaction=True)
def test_a_stage_that_keeps_dying_is_escalated_with_the_reason(sandbox, monkeypatch, settings, broker):
    settings.KAIZEN_STAGE_RESUMES = 1
    issue = report_dying_in_verification(monkeypatch)
    first = issue.stage_deadline + timedelta(seconds=1)
    assert sweep.stage_deadlines_sweep(now=first) == {"resumed": 1}  # ...and that worker dies too
    issue.refresh_from_db()

    assert sweep.stage_deadlines_sweep(now=issue.stage_deadline + timedelta(seconds=1)) == {"escalated": 1}

    issue.refresh_from_db()
    change = Change.objects.get(issue=issue)
    assert (issue.stage, change.status) == (Stage.ESCALATED, ChangeStatus.ABORTED)
    assert issue.stage_deadline is None and issue.severity == issue.base_severity
    detail = IssueEvent.objects.filter(issue=issue).last().detail
    assert "verifying stage did not finish within its 0:15:00 deadline, 2 times" in detail
    assert AuditEntry.objects.filter(action="owner.alert", target=f"issue:{issue.pk}").exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_verification_is_resumed_by_the_sweep(sandbox, settings, monkeypatch):
    """A real worker process, killed with SIGKILL while its verification replay is in flight;
    the sweep then resumes the stage and a second worker finishes the heal."""
    entered, release = threading.Event(), threading.Event()
    real_generate = demo.generate

    def generate_held(**kwargs):
        # The sandbox answers the first replay only once the worker sending it is dead.
        if not release.is_set():
            entered.set()
            release.wait(30)
        return real_generate(**kwargs)

    monkeypatch.setattr(demo, "generate", generate_held)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.test_settings",
        "DATABASE_URL": database_url(),
        "KAIZEN_DEMO": "1",
        "KAIZEN_SANDBOX_MODE": "1",
        "KAIZEN_SANDBOX_SECRET": settings.KAIZEN_SANDBOX_SECRET,
        "KAIZEN_SANDBOX_URL": settings.KAIZEN_SANDBOX_URL,
        "KAIZEN_ROLLOUT_CANARY_SECONDS": "1",
        "KAIZEN_ROLLOUT_PARTIAL_SECONDS": "1",
        "KAIZEN_ROLLOUT_FULL_SECONDS": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "kaizen_site", "worker", "-Q", "P0,P1,P2,P3,ops", "-c", "1",
               "-P", "solo", "--loglevel", "WARNING"]  # fmt: skip

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    worker = start_worker()
    try:
        key = Project.objects.get(slug="demo").keys.get().public_key
        response = Client().post(
            "/api/v1/issues", data=orjson.dumps(GENERATE), content_type="application/json", HTTP_X_KAIZEN_KEY=key
        )
        issue_id = response.json()["issue_id"]
        assert entered.wait(90), "the worker never reached verification"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()
        release.set()
    issue = Issue.objects.get(pk=issue_id)
    assert issue.stage == Stage.VERIFYING  # stranded: nobody is working on it any more

    assert sweep.stage_deadlines_sweep(now=issue.stage_deadline + timedelta(seconds=1)) == {"resumed": 1}
    second = start_worker()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stage = Issue.objects.filter(pk=issue_id).values_list("stage", flat=True).get()
            if stage in (Stage.RESOLVED, Stage.ABORTED, Stage.ESCALATED):
                break
            time.sleep(0.3)
    finally:
        second.terminate()
        second.wait(20)
    issue.refresh_from_db()
    assert issue.stage == Stage.RESOLVED, stages(issue)
    assert stages(issue)[:6] == ["detected", "diagnosing", "root_cause_found", "fixing", "verifying", "deployed"]
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.COMPLETE and change.scorecard["verification"]["passed"] is True


def test_the_sweep_runs_every_minute_on_the_ops_queue(settings):
    from healing import tasks  # noqa: F401 - registers them, as the worker's autodiscovery does
    from kaizen_site.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["sweep-stage-deadlines"]
    assert (entry["task"], entry["schedule"], entry["options"]["queue"]) == (
        "healing.tasks.sweep_stage_deadlines", 60.0, "ops",
    )  # fmt: skip
    assert {"healing.tasks.sweep_stage_deadlines", sweep.RESUME_TASK} <= set(app.tasks)
    # A stage a worker runs allows more than the task's time limit: the resumed work never runs
    # beside a live one.
    for stage in ("diagnosing", "root_cause_found", "fixing", "verifying"):
        assert settings.KAIZEN_STAGE_DEADLINES[stage] > settings.CELERY_TASK_TIME_LIMIT


@pytest.mark.django_db
def test_issues_stranded_before_deadlines_existed_get_one(settings, django_capture_on_commit_callbacks):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("healing.migrations.0007_loop_deadlines")
    stranded = IssueFactory(stage=Stage.VERIFYING, stage_deadline=None)
    batch = IssueFactory(stage=Stage.DETECTED, severity="P3", stage_deadline=None)
    done = IssueFactory(stage=Stage.RESOLVED, stage_deadline=None)

    migration.deadlines_for_issues_at_work(apps, None)

    stranded.refresh_from_db()
    expected = timezone.now() + timedelta(seconds=settings.KAIZEN_STAGE_DEADLINES["verifying"])
    assert abs((stranded.stage_deadline - expected).total_seconds()) < 60
    assert Issue.objects.filter(pk__in=[batch.pk, done.pk], stage_deadline__isnull=True).count() == 2
    later = stranded.stage_deadline + timedelta(seconds=1)
    with django_capture_on_commit_callbacks() as published:  # the resumption, sent after commit
        assert sweep.stage_deadlines_sweep(now=later) == {"resumed": 1}
    assert len(published) == 1
