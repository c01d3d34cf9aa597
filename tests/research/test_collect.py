"""One source's fetch: conditional GET and the 304 path, backoff and auto-disable (owner told),
parse problems recorded without stopping the run, once a day, dedupe and the relevance filter."""

from datetime import timedelta

import pytest
import responses
from django.utils import timezone
from responses import matchers

from healing.models import AuditEntry
from notifications.owner_alert import EventType
from research.collect import backoff_seconds, source_collect
from research.fetch import USER_AGENT
from research.models import FetchOutcome, ResearchRun, Source, SourceFetch, SourceItem, SourceKind
from tests.research.conftest import ATOM, BOZO_WITH_ENTRIES, NOT_A_FEED, RSS_ODD, hn_item

pytestmark = pytest.mark.django_db
FEED_URL = "https://lab.example/feed.xml"


@pytest.fixture
def run():
    return ResearchRun.objects.create(day=timezone.localdate(), trigger="test")


@pytest.fixture
def feed(db):
    return Source.objects.create(kind=SourceKind.FEED, name="Lab", url=FEED_URL)


@responses.activate
def test_first_fetch_stores_items_and_validators(feed, run, keywords):
    responses.get(
        FEED_URL, body=ATOM, headers={"ETag": '"v1"', "Last-Modified": "Sun, 29 Nov 2026 10:00:00 GMT"},
        match=[matchers.header_matcher({"User-Agent": USER_AGENT})],
    )  # fmt: skip
    result = source_collect(source=feed, run=run)
    assert (result.outcome, result.items, result.new, result.relevant) == ("ok", 2, 2, 1)
    feed.refresh_from_db()
    assert feed.etag == '"v1"' and feed.last_modified == "Sun, 29 Nov 2026 10:00:00 GMT"
    assert feed.last_success_at is not None and feed.consecutive_errors == 0
    relevant = SourceItem.objects.get(relevant=True)
    assert relevant.canonical_url == "https://lab.example/blog/agents-browser"
    assert not SourceItem.objects.get(relevant=False).title.startswith("Claude")
    assert SourceFetch.objects.get(run=run, source=feed).new == 2


@responses.activate
def test_not_modified_sends_validators_and_stores_nothing(feed, run):
    feed.etag, feed.last_modified = '"v1"', "Sun, 29 Nov 2026 10:00:00 GMT"
    feed.last_success_at = timezone.now() - timedelta(days=1)
    feed.save()
    responses.get(
        FEED_URL, status=304,
        match=[matchers.header_matcher({"If-None-Match": '"v1"', "If-Modified-Since": "Sun, 29 Nov 2026 10:00:00 GMT"})],
    )  # fmt: skip
    result = source_collect(source=feed, run=run)
    assert result.outcome == FetchOutcome.NOT_MODIFIED
    assert SourceItem.objects.count() == 0
    feed.refresh_from_db()
    assert feed.etag == '"v1"' and feed.last_success_at > timezone.now() - timedelta(minutes=1)


@responses.activate
def test_same_day_rerun_does_not_refetch(feed, run):
    responses.get(FEED_URL, body=ATOM)
    source_collect(source=feed, run=run)
    feed.refresh_from_db()
    again = source_collect(source=feed, run=ResearchRun.objects.create(day=run.day, trigger="test"))
    assert again.outcome == FetchOutcome.SKIPPED and again.error == "already fetched today"
    assert len(responses.calls) == 1


@responses.activate
def test_errors_back_off_then_disable_and_tell_the_owner(feed, run, fast_backoff):
    responses.get(FEED_URL, status=503)
    first = source_collect(source=feed, run=run)
    assert first.outcome == FetchOutcome.ERROR and "HTTP 503" in first.error
    feed.refresh_from_db()
    assert feed.consecutive_errors == 1 and feed.enabled
    assert timedelta(seconds=55) < feed.next_attempt_at - timezone.now() <= timedelta(seconds=60)
    # While backing off the source is not even requested.
    assert source_collect(source=feed, run=run).outcome == FetchOutcome.SKIPPED
    assert len(responses.calls) == 1
    for expected in (2, 3):
        Source.objects.filter(pk=feed.pk).update(next_attempt_at=None)
        feed.refresh_from_db()
        source_collect(source=feed, run=run)
        feed.refresh_from_db()
        assert feed.consecutive_errors == expected
    assert not feed.enabled and "3 failures in a row" in feed.disabled_reason
    alert = AuditEntry.objects.get(action="owner.alert", target=f"research-source:{feed.pk}")
    assert alert.detail["event"] == EventType.SYSTEM_ALERT


@responses.activate
def test_permanent_error_counts_double(feed, run, fast_backoff):
    responses.get(FEED_URL, status=404)
    source_collect(source=feed, run=run)
    feed.refresh_from_db()
    assert feed.consecutive_errors == 2 and "HTTP 404" in feed.last_error


def test_backoff_doubles_and_is_capped(settings):
    settings.KAIZEN_RESEARCH_BACKOFF_SECONDS, settings.KAIZEN_RESEARCH_BACKOFF_MAX_SECONDS = 900, 3600
    assert [backoff_seconds(errors=n) for n in (1, 2, 3, 4, 5)] == [900, 1800, 3600, 3600, 3600]


@responses.activate
def test_parse_problems_are_recorded_and_a_broken_source_does_not_stop_the_others(run):
    bozo = Source.objects.create(kind=SourceKind.FEED, name="Bozo", url="https://bozo.example/feed")
    broken = Source.objects.create(kind=SourceKind.FEED, name="Broken", url="https://broken.example/feed")
    responses.get(bozo.url, body=BOZO_WITH_ENTRIES)
    responses.get(broken.url, body=NOT_A_FEED)
    assert source_collect(source=broken, run=run).outcome == FetchOutcome.ERROR
    result = source_collect(source=bozo, run=run)
    assert result.outcome == FetchOutcome.OK and result.new == 1
    stored = SourceFetch.objects.get(run=run, source=bozo)
    assert stored.problems[0].startswith("malformed feed")
    broken.refresh_from_db()
    assert broken.consecutive_errors == 2 and "not a readable feed" in broken.last_error


@responses.activate
def test_dedupe_by_canonical_url_across_sources(run):
    one = Source.objects.create(kind=SourceKind.FEED, name="One", url="https://one.example/feed")
    two = Source.objects.create(kind=SourceKind.FEED, name="Two", url="https://two.example/feed")
    responses.get(one.url, body=ATOM)
    responses.get(two.url, body=ATOM.replace(b"?utm_source=rss", b"?utm_medium=x").replace(b"urn:uuid", b"urn:other"))
    assert source_collect(source=one, run=run).new == 2
    assert source_collect(source=two, run=run).new == 0
    assert SourceItem.objects.count() == 2


@responses.activate
def test_timeout_is_transient(feed, run, fast_backoff):
    import requests

    responses.get(FEED_URL, body=requests.ReadTimeout("slow"))
    result = source_collect(source=feed, run=run)
    assert "timed out" in result.error
    feed.refresh_from_db()
    assert feed.consecutive_errors == 1


@responses.activate
def test_hacker_news_top_stories_filtered_by_keywords(run, keywords):
    source = Source.objects.create(
        kind=SourceKind.HACKERNEWS, name="HN", url="https://hn.example/v0/topstories.json", params={"limit": 3}
    )
    responses.get(source.url, json=[1, 2, 3, 4])
    responses.get(
        "https://hn.example/v0/item/1.json", body=hn_item(1, "Show HN: an LLM agent", url="https://a.example")
    )
    responses.get("https://hn.example/v0/item/2.json", body=hn_item(2, "Gardening tips", url="https://b.example"))
    responses.get("https://hn.example/v0/item/3.json", status=500)
    result = source_collect(source=source, run=run)
    assert (result.items, result.new, result.relevant) == (2, 2, 1)
    assert result.problems == ["story 3: HTTP 500 from https://hn.example/v0/item/3.json"]
    assert SourceItem.objects.get(relevant=True).external_id == "hn:1"


@responses.activate
def test_dry_run_fetches_but_stores_nothing(feed, run):
    responses.get(FEED_URL, body=RSS_ODD)
    result = source_collect(source=feed, run=run, dry_run=True)
    assert result.items == 3 and len(result.fetched) == 3
    assert not SourceItem.objects.exists() and not SourceFetch.objects.exists()
    feed.refresh_from_db()
    assert feed.last_fetched_at is None


def test_a_source_edited_into_nonsense_fails_alone(run, settings):
    settings.REDDIT_CLIENT_ID, settings.REDDIT_CLIENT_SECRET = "id", "secret"
    broken = Source.objects.create(kind=SourceKind.REDDIT, name="No subreddit", params={})
    result = source_collect(source=broken, run=run)
    assert result.outcome == FetchOutcome.ERROR and result.error == "unexpected KeyError: 'subreddit'"
    broken.refresh_from_db()
    assert broken.consecutive_errors == 2 and SourceFetch.objects.get(source=broken).outcome == "error"
