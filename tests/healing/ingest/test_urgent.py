"""A P0 report does not wait behind the stream: in stream mode it is written before the answer
and its issue's work is published at once; whatever fails, it is still taken the usual way."""

import orjson
import pytest
import redis
from django.conf import settings

from healing.ingest import classify
from healing.models import ClassificationRule, EnqueueState, Issue, Occurrence
from tests.healing.ingest.test_ingest_faults import database_unreachable, own_redis  # noqa: F401 - own_redis: a fixture

PAID = {"type": "BILLING_ISSUE", "message": "I paid for 100 credits but my balance still shows 0", "user": {"id": "u1"}}
SERVER_ERROR = {
    "type": "ERROR",
    "message": "Generate failed",
    "request": {"method": "POST", "path": "/api/generate", "status": 502},
    "user": {"id": "u2"},
}


@pytest.fixture(autouse=True)
def _stream_mode(settings):
    settings.KAIZEN_INGEST_MODE = "stream"


def _queued() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).xlen(settings.KAIZEN_INGEST_STREAM)


def _broker_queue(name: str) -> list[dict]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [orjson.loads(raw) for raw in client.lrange(name, 0, -1)]


@pytest.mark.django_db(transaction=True)  # the task is published after the commit
def test_a_p0_report_is_stored_and_its_work_published_before_the_answer(post_report):
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("P0")
    answer = post_report(PAID)
    assert answer.status_code == 202
    assert answer.json()["stage"] == "detected"
    assert _queued() == 0
    issue = Issue.objects.get(pk=answer.json()["issue_id"])
    assert issue.severity == "P0" and issue.enqueue_state == EnqueueState.SENT
    assert Occurrence.objects.filter(event_id=answer.json()["event_id"]).exists()
    published = _broker_queue("P0")
    assert [m["headers"]["task"] for m in published] == ["healing.tasks.process_issue"]
    assert published[0]["headers"]["argsrepr"] == repr([str(issue.pk)])


def test_other_reports_still_go_through_the_stream(post_report, drain):
    answer = post_report(SERVER_ERROR)
    assert answer.json()["stage"] == "received"
    assert _queued() == 1 and not Occurrence.objects.exists()
    drain()
    assert Issue.objects.get(pk=answer.json()["issue_id"]).severity == "P1"


@pytest.mark.django_db(transaction=True)
def test_a_p0_report_goes_through_the_stream_when_the_database_fails(post_report, drain, settings):
    settings.KAIZEN_KEY_CACHE_SECONDS = 60  # the key and the rules were read before the outage
    assert post_report(SERVER_ERROR).status_code == 202
    with database_unreachable():
        answer = post_report(PAID)
    assert answer.status_code == 202
    assert answer.json()["stage"] == "received"
    assert not Occurrence.objects.filter(event_id=answer.json()["event_id"]).exists()  # nothing partial
    drain()
    assert Issue.objects.get(pk=answer.json()["issue_id"]).severity == "P0"
    # Both reports counted once against the quota: the P0's failed direct write gave its share back.
    quota = redis.Redis.from_url(settings.REDIS_URL)
    assert sum(int(quota.get(key)) for key in quota.keys("kaizen:quota:*")) == 2  # a minute may have turned


def test_over_the_quota_a_p0_report_is_refused_and_nothing_written(post_report, project):
    project.rate_limit_per_minute = 1
    project.save()
    assert post_report(SERVER_ERROR).status_code == 202
    answer = post_report(PAID)
    assert answer.status_code == 429
    assert int(answer["Retry-After"]) > 0
    assert _queued() == 1 and not Occurrence.objects.exists()


def test_a_p0_report_is_written_while_redis_is_down_and_its_work_sent_later(post_report, own_redis):  # noqa: F811 - the fixture
    own_redis.stop()
    answer = post_report(PAID)
    assert answer.status_code == 202
    assert answer.json()["stage"] == "detected"
    issue = Issue.objects.get(pk=answer.json()["issue_id"])
    assert issue.severity == "P0"
    assert issue.enqueue_state == EnqueueState.PENDING  # the outbox's sweep sends it once Redis is back


def test_the_door_classifies_an_issue_once_until_the_rules_change(post_report, drain, monkeypatch):
    calls = []
    real = classify.classify
    monkeypatch.setattr(classify, "classify", lambda **kw: calls.append(kw["report"]["message"]) or real(**kw))
    for _ in range(3):
        assert post_report(SERVER_ERROR).json()["stage"] == "received"
    assert calls == ["Generate failed"]
    # The owner makes server errors P0: the reloaded rules are asked again, and the report goes in at once.
    ClassificationRule.objects.filter(status_min=500).update(severity="P0")
    classify.forget_rules()
    assert post_report(SERVER_ERROR).json()["stage"] == "detected"
    assert calls == ["Generate failed"] * 3  # the door again, then the store writing it at once


@pytest.mark.django_db(transaction=True)
def test_a_new_p0_report_is_written_in_one_transaction_without_savepoints(post_report):
    """The report waits for these round trips under load: each one counts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post_report({**PAID, "user": {"id": "warm"}, "fingerprint": ["warm-up"]})  # the rules, cached
    with CaptureQueriesContext(connection) as queries:
        assert post_report(PAID).status_code == 202
    # The key's look-up aside (cached in production, not under the test settings).
    statements = [q["sql"].split()[0] for q in queries.captured_queries if "healing_projectkey" not in q["sql"]]
    # Write the occurrence, read the stages, record the user, upsert the issue; then mark it sent.
    assert statements == ["BEGIN", "INSERT", "SELECT", "INSERT", "INSERT", "COMMIT", "UPDATE"]
