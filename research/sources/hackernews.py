"""Hacker News through its official API (https://github.com/HackerNews/API): the top-stories id
list, then each story. Stories are filtered to the relevance keywords by the caller."""

import json
from datetime import UTC, datetime
from typing import Any

from . import Item, ParseError, text_clean

API = "https://hacker-news.firebaseio.com/v0"
ITEM_PAGE = "https://news.ycombinator.com/item?id={id}"


def story_ids(*, body: bytes, limit: int) -> list[int]:
    try:
        ids = json.loads(body)
    except ValueError as exc:
        raise ParseError(f"top stories is not JSON: {exc}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise ParseError("top stories is not a list of ids")
    return ids[:limit]


def story(*, body: bytes, source: str) -> Item | None:
    """The item, or None for what is not a live story (deleted, dead, a job or a comment)."""
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise ParseError(f"item is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "story" or data.get("deleted") or data.get("dead"):
        return None
    page = ITEM_PAGE.format(id=data["id"])
    return Item(
        title=text_clean(str(data.get("title", "")), limit=500),
        url=data.get("url") or page,  # Ask HN has no url: the discussion is the item
        summary=text_clean(str(data.get("text", ""))) or f"{data.get('score', 0)} points, discussion: {page}",
        published=datetime.fromtimestamp(data["time"], tz=UTC) if data.get("time") else None,
        source=source,
        external_id=f"hn:{data['id']}",
        signal=float(data.get("score") or 0),
    )
