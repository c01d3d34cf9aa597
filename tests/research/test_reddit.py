"""Reddit through the real praw, faked only at its HTTP layer (requests, via `responses`)."""

import pytest
import responses
from django.utils import timezone
from responses import matchers

from research.collect import source_collect
from research.fetch import USER_AGENT
from research.models import FetchOutcome, ResearchRun, Source, SourceItem, SourceKind

pytestmark = pytest.mark.django_db
TOKEN_URL = "https://www.reddit.com/api/v1/access_token"
TOP_URL = "https://oauth.reddit.com/r/webdev/top"


def post(post_id: str, title: str, *, url: str, is_self: bool = False, stickied: bool = False, score: int = 10) -> dict:
    return {
        "kind": "t3",
        "data": {
            "id": post_id, "name": f"t3_{post_id}", "title": title, "url": url, "is_self": is_self,
            "permalink": f"/r/webdev/comments/{post_id}/x/", "selftext": "Body with <b>text</b>" if is_self else "",
            "created_utc": 1_790_000_000.0, "score": score, "stickied": stickied, "subreddit": "webdev",
        },
    }  # fmt: skip


@pytest.fixture
def reddit_on(settings):
    settings.REDDIT_CLIENT_ID, settings.REDDIT_CLIENT_SECRET = "client", "secret"


@pytest.fixture
def source(db):
    return Source.objects.create(
        kind=SourceKind.REDDIT, name="test r/webdev", params={"subreddit": "webdev", "limit": 5}
    )


@responses.activate
def test_read_only_top_posts(reddit_on, source, keywords):
    responses.post(
        TOKEN_URL,
        json={"access_token": "tok", "token_type": "bearer", "expires_in": 3600, "scope": "*"},
        match=[matchers.header_matcher({"User-Agent": f"{USER_AGENT} PRAW/8.0.3 prawcore/4.0.0"}, strict_match=False)],
    )
    listing = {"kind": "Listing", "data": {"after": None, "before": None, "dist": 3, "children": [
        post("a1", "New web API for AI agents", url="https://blog.example/agents", score=420),
        post("a2", "Ask: how do you test CSS?", url="", is_self=True),
        post("a3", "Weekly thread", url="https://reddit.com/x", stickied=True),
    ]}}  # fmt: skip
    responses.get(
        TOP_URL, json=listing, match=[matchers.query_param_matcher({"t": "day", "limit": "5", "raw_json": "1"})]
    )
    run = ResearchRun.objects.create(day=timezone.localdate())
    result = source_collect(source=source, run=run)
    assert (result.outcome, result.items, result.new, result.relevant) == ("ok", 2, 2, 1)
    link = SourceItem.objects.get(external_id="reddit:a1")
    assert link.url == "https://blog.example/agents" and link.signal == 420 and link.relevant
    own = SourceItem.objects.get(external_id="reddit:a2")
    assert own.url == "https://www.reddit.com/r/webdev/comments/a2/x/" and own.summary == "Body with text"
    assert responses.calls[1].request.headers["Authorization"] == "bearer tok"
    # check_for_updates=False: no request to PyPI (responses would have refused it).
    assert all("pypi" not in call.request.url for call in responses.calls)


@responses.activate
def test_server_error_is_transient(reddit_on, source, fast_backoff):
    responses.post(TOKEN_URL, json={"access_token": "tok", "token_type": "bearer", "expires_in": 3600, "scope": "*"})
    responses.get(TOP_URL, status=503)
    result = source_collect(source=source, run=None)
    assert result.outcome == FetchOutcome.ERROR and "r/webdev" in result.error
    source.refresh_from_db()
    assert source.consecutive_errors == 1


def test_without_credentials_reddit_is_off_not_failing(settings, source):
    settings.REDDIT_CLIENT_ID = ""
    result = source_collect(source=source, run=None)
    assert result.outcome == FetchOutcome.SKIPPED and result.error.startswith("off:")
    source.refresh_from_db()
    assert source.consecutive_errors == 0 and source.enabled
