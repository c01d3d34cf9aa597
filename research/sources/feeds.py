"""RSS 2.0 and Atom feeds, parsed by feedparser from bytes we fetched ourselves."""

import calendar
from datetime import UTC, datetime
from typing import Any

import feedparser

from . import Item, Parsed, ParseError, text_clean


def _published(entry: Any) -> datetime | None:
    # feedparser normalises RFC 822, ISO 8601 and many broken date forms into a UTC struct_time.
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def parse(*, body: bytes, source: str, base_url: str = "", lines: bool = False) -> Parsed:
    # The headers we would otherwise lose by handing feedparser bytes: the URL relative links
    # resolve against, and a content type (without one every feed is flagged as malformed).
    headers = {"content-type": "application/xml", "content-location": base_url}
    feed = feedparser.parse(body, response_headers=headers)
    problems = []
    if not feed.version and not feed.entries:  # an HTML error page, a JSON body: not RSS or Atom at all
        raise ParseError(f"not a readable feed: {feed.get('bozo_exception') or 'neither RSS nor Atom'}")
    if feed.bozo:
        # A bozo feed with entries is still read (most are a stray character or a wrong charset).
        problems.append(f"malformed feed: {feed.bozo_exception}")
        if not feed.entries:
            raise ParseError(f"not a readable feed: {feed.bozo_exception}")
    items = []
    for entry in feed.entries:
        url = entry.get("link") or ""
        title = text_clean(entry.get("title") or "", limit=500)
        if not url or not title:
            problems.append(f"entry without link or title skipped: {title or url or '(empty)'}")
            continue
        summary = entry.get("summary") or ""
        if not summary and entry.get("content"):
            summary = entry.content[0].get("value", "")
        items.append(
            Item(
                title=title,
                url=url,
                summary=text_clean(summary, lines=lines),
                published=_published(entry),
                source=source,
                external_id=(entry.get("id") or url)[:500],
            )
        )
    return Parsed(items=items, problems=problems)
