"""Each fetcher on payloads in the shape of the real ones; all return the same normalized Item."""

from datetime import UTC, datetime

import pytest

from research.sources import ParseError, canonical_url, changelog, feeds, github_trending, hackernews, pages
from tests.research.conftest import ATOM, BOZO_WITH_ENTRIES, NOT_A_FEED, RSS_ODD, TRENDING, changelog_page, hn_item


def test_atom_feed_items_are_normalized():
    parsed = feeds.parse(body=ATOM, source="Lab")
    assert parsed.problems == []
    first, second = parsed.items
    assert first.title == "Claude agents learn to use the browser"
    assert first.url == "https://lab.example/blog/agents-browser?utm_source=rss"
    assert first.summary == "Agents can now click through web apps."
    assert first.published == datetime(2026, 11, 29, 8, 30, tzinfo=UTC)  # +01:00 normalised to UTC
    assert first.external_id == "urn:uuid:1111" and first.source == "Lab"
    assert second.summary == "Tomatoes did well."  # from <content> when there is no summary


def test_rss_with_odd_dates_and_html_summaries():
    parsed = feeds.parse(body=RSS_ODD, source="News")
    by_title = {item.title: item for item in parsed.items}
    api = by_title["New LLM inference API for web developers"]
    assert api.published == datetime(2026, 11, 29, 15, 0, tzinfo=UTC)  # PST is UTC−8
    assert api.summary == "Faster tokens Streaming"
    assert api.external_id == "news-1"
    assert by_title["Two-digit year and no weekday"].published == datetime(2026, 11, 29, 13, 45, tzinfo=UTC)
    assert by_title["No date at all"].published is None
    assert by_title["No date at all"].external_id == "https://news.example/no-date"  # no guid: the link
    assert len(parsed.items) == 3
    assert parsed.problems == ["entry without link or title skipped: (empty)"]


def test_bozo_feed_with_entries_is_read_and_flagged():
    parsed = feeds.parse(body=BOZO_WITH_ENTRIES, source="Bozo")
    assert [item.url for item in parsed.items] == ["https://bozo.example/a"]
    assert parsed.problems and parsed.problems[0].startswith("malformed feed:")


def test_unreadable_feed_raises_parse_error():
    with pytest.raises(ParseError, match="not a readable feed"):
        feeds.parse(body=NOT_A_FEED, source="Down")


def test_hacker_news_story_and_what_is_not_a_story():
    ids = hackernews.story_ids(body=b"[3, 2, 1]", limit=2)
    assert ids == [3, 2]
    story = hackernews.story(body=hn_item(8863, "My YC app", url="http://getdropbox.com/", score=111), source="HN")
    assert story.url == "http://getdropbox.com/" and story.external_id == "hn:8863" and story.signal == 111
    assert story.published == datetime.fromtimestamp(1_790_000_000, tz=UTC)
    ask = hackernews.story(body=hn_item(5, "Ask HN: agents?"), source="HN")
    assert ask.url == "https://news.ycombinator.com/item?id=5"  # no url: the discussion
    assert hackernews.story(body=hn_item(6, "Hiring", kind="job"), source="HN") is None
    with pytest.raises(ParseError):
        hackernews.story_ids(body=b'{"not": "a list"}', limit=5)


def test_github_trending_rows():
    parsed = github_trending.parse(body=TRENDING, source="GH")
    first, second = parsed.items
    assert first.url == "https://github.com/acme/agent-kit" and first.external_id == "gh:acme/agent-kit"
    assert first.signal == 4007
    assert "An AI agent toolkit for web apps" in first.summary and "Python" in first.summary
    assert second.signal == 12
    assert parsed.problems == ["a trending row without a repository link was skipped"]


def test_github_trending_changed_markup_is_a_parse_error():
    with pytest.raises(ParseError, match="markup has changed"):
        github_trending.parse(body=b"<html><div class='repo'>x</div></html>", source="GH")


def test_changelog_page_entries_and_their_hashes():
    before = changelog_page(("v2", "Version 2", ["Added real-time collaboration", "Fixed a crash"]))
    after = changelog_page(
        ("v3", "Version 3", ["Introducing one-click deploy previews"]),
        ("v2", "Version 2", ["Added real-time collaboration", "Fixed a crash"]),
    )
    old = changelog.parse(body=before, source="C", base_url="https://c.example/changelog")
    new = changelog.parse(body=after, source="C", base_url="https://c.example/changelog")
    assert old.items[0].summary == "Added real-time collaboration\nFixed a crash"
    assert old.items[0].url == "https://c.example/changelog#v2"
    # Unchanged entry, same hash; the new one differs.
    assert new.items[1].external_id == old.items[0].external_id
    assert new.items[0].external_id != old.items[0].external_id


def test_changelog_as_rss_uses_the_feed_with_content_hashed_ids():
    parsed = changelog.parse(body=RSS_ODD, source="C", base_url="https://news.example/")
    assert parsed.items[0].external_id.startswith("news-1#")
    assert parsed.items[0].summary == "Faster tokens\nStreaming"


def test_news_page_scrape_with_selector():
    body = b"""<html><body><a href="/news">News</a>
      <a href="/news/claude-5"><h3>Introducing Claude 5</h3></a>
      <a href="/news/claude-5">duplicate link</a>
      <a href="/news/policy"><span>Policy update</span></a></body></html>"""
    parsed = pages.parse(body=body, source="A", base_url="https://lab.example/news", item_selector="a[href^='/news']")
    assert [(i.title, i.url) for i in parsed.items] == [
        ("Introducing Claude 5", "https://lab.example/news/claude-5"),
        ("Policy update", "https://lab.example/news/policy"),
    ]


def test_canonical_url_drops_tracking_and_fragments():
    assert (
        canonical_url("HTTPS://www.Lab.example/blog/x/?utm_source=rss&b=2&a=1#top")
        == "https://lab.example/blog/x?a=1&b=2"
    )


def test_canonical_url_keeps_an_anchor_that_names_the_item():
    assert canonical_url("https://c.example/changelog#v2", keep_fragment=True) == "https://c.example/changelog#v2"
