"""Issue stages reach the sessions that met the issue: one event each, after commit, published
in one go; a flapping issue is rate-limited; ingest's stored reports and the owner's own message
go down the same stream."""

import time

import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from healing import messages
from healing.loop.stages import issue_move
from healing.models import AuditEntry, IssueEvent, SessionEvent, Stage
from healing.stream import fanout
from tests.factories import IssueFactory, ProjectFactory
from tests.healing.stream.conftest import reported, session_new


@pytest.fixture
def published():
    """What the fan-out PUBLISHes on the wake-up channel, as a stream process's hub receives it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(fanout.CHANNEL)

    def read(quiet: float = 0.5) -> list[dict]:
        """Everything published until the channel has been quiet for `quiet` seconds."""
        events, last = [], time.monotonic()
        while time.monotonic() - last < quiet:
            message = pubsub.get_message(timeout=0.1)  # None also for the ignored subscribe reply
            if message is not None:
                events.extend(orjson.loads(message["data"]))
                last = time.monotonic()
        return events

    yield read
    pubsub.close()


def statuses(session) -> list[dict]:
    return [e.payload for e in SessionEvent.objects.filter(session=session, kind="status").order_by("id")]


def test_a_stage_move_reaches_each_session_that_met_the_issue_after_commit(
    project, issue, user_session, published, django_capture_on_commit_callbacks
):
    other_tab_user = session_new(project=project, name="Grace")
    reported(session=other_tab_user, issue=issue)
    bystander = session_new(project=project)  # met another issue: hears nothing of this one
    reported(session=bystander, issue=IssueFactory(project=project))
    stranger = session_new(project=ProjectFactory())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.DIAGNOSING)
    assert SessionEvent.objects.count() == 0  # nothing is told before the move commits
    with django_capture_on_commit_callbacks(execute=True):  # as after the commit: rows, then the wake-up
        for callback in callbacks:
            callback()

    status = statuses(user_session)[0]
    assert status["issue_id"] == str(issue.pk) and status["stage"] == "diagnosing"
    assert (status["step"], status["steps"], status["final"], status["needs_input"]) == (2, 6, False, False)
    assert status["eta_seconds"] > 0 and status["message"].startswith("We're working out what went wrong")
    assert statuses(other_tab_user)[0]["stage"] == "diagnosing"
    assert statuses(bystander) == statuses(stranger) == []
    wire = published()
    assert sorted(e["s"] for e in wire) == sorted([user_session.session_id, other_tab_user.session_id])
    stored = {e.pk: e.payload for e in SessionEvent.objects.all()}
    assert {e["id"]: e["d"] for e in wire} == stored  # the wake-up carries the events themselves


def test_fixed_reads_fixed_with_the_users_name(issue, user_session, django_capture_on_commit_callbacks):
    issue.stage = Stage.VERIFYING
    issue.save()
    with django_capture_on_commit_callbacks(execute=True):
        issue_move(issue=issue, expected=Stage.VERIFYING, to=Stage.DEPLOYED)
    status = statuses(user_session)[-1]
    assert status["final"] is True and status["step"] == 6 and status["eta_seconds"] == 0
    assert status["message"] == "**Fixed.** Thanks for your patience, Ada. Please try again."


def test_needs_input_carries_a_safe_question_and_offers_to_try_again(
    issue, user_session, django_capture_on_commit_callbacks
):
    issue.stage = Stage.DIAGNOSING
    issue.save()
    with django_capture_on_commit_callbacks(execute=True):
        issue_move(issue=issue, expected=Stage.DIAGNOSING, to=Stage.NEEDS_INPUT,
                   message="Which file did you upload just before?")  # fmt: skip
    status = statuses(user_session)[-1]
    assert (status["needs_input"], status["reproduce"]) == (True, True)
    assert status["question"] == "Which file did you upload just before?"
    assert status["eta_seconds"] is None


def test_a_flapping_issue_is_capped_and_the_final_word_still_gets_through(
    settings, issue, user_session, django_capture_on_commit_callbacks
):
    settings.KAIZEN_STREAM_STATUSES_PER_MINUTE = 3
    settings.KAIZEN_STREAM_HARD_CAP = 5
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(10):  # diagnosis keeps failing and retrying: detected ⇄ diagnosing
            issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.DIAGNOSING)
            issue_move(issue=issue, expected=Stage.DIAGNOSING, to=Stage.DETECTED, message="")
    assert [s["stage"] for s in statuses(user_session)] == ["diagnosing", "detected", "diagnosing"]
    with django_capture_on_commit_callbacks(execute=True):
        issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.ESCALATED)  # a person takes over: must be seen
    assert statuses(user_session)[-1]["stage"] == "escalated"
    issue.stage = Stage.ESCALATED
    with django_capture_on_commit_callbacks(execute=True):
        issue_move(issue=issue, expected=Stage.ESCALATED, to=Stage.RESOLVED)
        issue_move(issue=issue, expected=Stage.RESOLVED, to=Stage.DETECTED)
        issue_move(issue=issue, expected=Stage.DETECTED, to=Stage.RESOLVED)
    # Fixed got through; past the hard cap even a final status waits for the next minute.
    assert [s["stage"] for s in statuses(user_session)][3:] == ["escalated", "resolved"]
    assert len(statuses(user_session)) == settings.KAIZEN_STREAM_HARD_CAP


def test_each_user_reads_their_own_name_and_more_sessions_cost_no_more_queries(project, issue):
    """Words are rendered once per first name and shared by the rows: each user still reads their
    own. The sessions, their rate state and the insert are one statement each, for any number."""
    ada, ada_too = session_new(project=project, name="Ada Lovelace"), session_new(project=project, name="Ada Byron")
    grace, nameless = session_new(project=project, name="Grace"), session_new(project=project)
    for session in (ada, ada_too, grace, grace, nameless):  # Grace reported twice: told once
        reported(session=session, issue=issue)
    messages.progress(stage=Stage.DETECTED)  # the learned durations and the templates, cached
    messages.template_text(message_stage="DETECTED", issue_type=issue.type)

    event = IssueEvent.objects.create(issue=issue, stage=Stage.DETECTED)
    with CaptureQueriesContext(connection) as few:
        wire = fanout.issue_event_deliver(event=event)
    worded = {e["s"]: e["d"]["message"] for e in wire}
    assert worded == {
        ada.session_id: "Looks like that click didn't do anything, Ada. We noticed, and we're on it.",
        ada_too.session_id: "Looks like that click didn't do anything, Ada. We noticed, and we're on it.",
        grace.session_id: "Looks like that click didn't do anything, Grace. We noticed, and we're on it.",
        nameless.session_id: "Looks like that click didn't do anything. We noticed, and we're on it.",
    }
    assert {e["id"]: e["d"] for e in wire} == {e.pk: e.payload for e in SessionEvent.objects.all()}

    for n in range(6):
        reported(session=session_new(project=project, name=f"User{n}"), issue=issue)
    event = IssueEvent.objects.create(issue=issue, stage=Stage.DIAGNOSING)
    with CaptureQueriesContext(connection) as more:
        wire = fanout.issue_event_deliver(event=event)
    assert len(wire) == 10 and len(more) == len(few) == 2  # the sessions, the insert: the event is not read again


def test_the_same_stage_is_not_told_twice():
    assert not fanout.status_allowed(stage="detected", last_stage="detected", recent=0)
    assert fanout.status_allowed(stage="detected", last_stage="resolved", recent=0)
    assert fanout.status_allowed(stage="resolved", last_stage="fixing", recent=10)  # final passes the soft cap
    assert not fanout.status_allowed(stage="fixing", last_stage="verifying", recent=10)
    assert not fanout.status_allowed(stage="resolved", last_stage="fixing", recent=100)  # not the hard one


@pytest.mark.parametrize("mode", ["direct", "stream"])
def test_a_stored_report_from_a_session_gets_a_status_for_its_issue(
    mode, settings, project, project_key, post_report, drain, django_capture_on_commit_callbacks
):
    settings.KAIZEN_INGEST_MODE = mode
    session = session_new(project=project, name="Ada")
    with django_capture_on_commit_callbacks(execute=True):
        answer = post_report({"type": "SILENT_FAILURE", "message": "Generate did nothing",
                              "session_id": session.session_id, "user": {"id": "42"}})  # fmt: skip
        drain()
    assert answer.status_code == 202
    status = statuses(session)[0]
    assert status["issue_id"] == answer.json()["issue_id"] and status["stage"] == "detected"
    assert status["message"] == "Looks like that click didn't do anything, Ada. We noticed, and we're on it."


def test_a_batch_without_session_ids_costs_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        fanout.occurrences_status(records=[{"project_id": 1, "issue_id": "x", "report": {"message": "m"}}])


def _records(project, session_ids, issue):
    return [
        {"project_id": project.pk, "issue_id": str(issue.pk), "report": {"message": "m", "session_id": session_id}}
        for session_id in session_ids
    ]


def test_a_batch_of_reports_from_sessions_costs_the_same_few_queries_at_any_size(project, django_assert_num_queries):
    issue = IssueFactory(project=project)
    known = [session_new(project=project) for _ in range(3)]
    for size in (10, 500):
        records = _records(project, [s.session_id for s in known] + [f"unknown-{n}" for n in range(size)], issue)
        with django_assert_num_queries(3):  # the sessions, their issues' stages, one insert
            fanout.occurrences_status(records=records)
    with django_assert_num_queries(1):  # none of ours: the look-up only
        fanout.occurrences_status(records=_records(project, [f"unknown-{n}" for n in range(500)], issue))


def test_a_session_id_reported_to_another_project_reaches_no_stream(project):
    session = session_new(project=project)
    other = ProjectFactory()
    fanout.occurrences_status(records=_records(other, [session.session_id], IssueFactory(project=other)))
    assert SessionEvent.objects.count() == 0


def test_a_report_under_someone_elses_made_up_session_id_reaches_no_stream(project, drain, post_report):
    post_report({"type": "ERROR", "message": "boom", "session_id": "not-minted-here"})
    drain()
    assert SessionEvent.objects.count() == 0


def test_the_owner_sends_a_message_and_a_command_from_the_console(
    admin_client, issue, user_session, published, django_capture_on_commit_callbacks
):
    url = f"/admin/healing/usersession/{user_session.pk}/change/"
    assert admin_client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(url, {"send": "message", "text": "Hi Ada, we've **credited** your account."})
        assert answer.status_code == 302
        admin_client.post(url, {"send": "retry", "target": "generate"})
        admin_client.post(url, {"send": "reproduce", "issue": str(issue.pk)})
    message, command, reproduce = SessionEvent.objects.filter(session=user_session).order_by("id")
    assert (message.kind, message.payload["message"], message.payload["from"]) == (
        "message", "Hi Ada, we've **credited** your account.", "owner")  # fmt: skip
    assert (command.kind, command.payload) == ("command", {"type": "retry", "target": "generate", "payload": {}})
    assert reproduce.payload["reproduce"] is True and "try that once more" in reproduce.payload["message"]
    assert [e["k"] for e in published()] == ["message", "command", "status"]
    audit = AuditEntry.objects.filter(target=f"user-session:{user_session.pk}").order_by("id")
    assert [a.action for a in audit] == ["session.message", "session.retry", "session.reproduce"]
    assert audit[0].actor == "admin"


def test_the_console_refuses_an_empty_message(admin_client, user_session):
    answer = admin_client.post(f"/admin/healing/usersession/{user_session.pk}/change/", {"send": "message"})
    assert answer.status_code == 200 and SessionEvent.objects.count() == 0


def test_an_unknown_command_is_never_sent(user_session):
    with pytest.raises(ValueError, match="Unknown command"):
        fanout.session_command(session=user_session, type="eval")
    assert SessionEvent.objects.count() == 0


def test_publishing_without_redis_is_a_no_op_and_the_rows_stay(settings, user_session):
    settings.REDIS_URL = ""
    event = fanout.session_message(session=user_session, text="Hello")
    assert SessionEvent.objects.get().pk == event.pk
