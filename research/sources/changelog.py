"""Competitor changelogs: an RSS feed where they publish one (Cursor, Lovable), otherwise the
page's entries found with the source's `entry_selector`. Each entry becomes an item whose
external id is a hash of its content, so an edited entry is a new one for the diff."""

import hashlib
from urllib.parse import urljoin

from bs4 import BeautifulSoup

from . import Item, Parsed, ParseError, feeds, text_clean

DEFAULT_ENTRY_SELECTOR = "article"


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


def _looks_like_feed(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith(b"<?xml") or b"<rss" in head or b"<feed" in head


def parse(*, body: bytes, source: str, base_url: str, entry_selector: str = "") -> Parsed:
    if _looks_like_feed(body):
        parsed = feeds.parse(body=body, source=source, base_url=base_url, lines=True)
        parsed.items = [
            Item(
                title=item.title,
                url=item.url,
                summary=item.summary,
                published=item.published,
                source=source,
                external_id=f"{item.external_id}#{content_hash(item.title + item.summary)}"[:500],
            )
            for item in parsed.items
        ]
        return parsed
    selector = entry_selector or DEFAULT_ENTRY_SELECTOR
    soup = BeautifulSoup(body, "html.parser")
    nodes = soup.select(selector)
    if not nodes:
        raise ParseError(f"no changelog entry matches {selector!r}: the page's markup has changed")
    items, problems = [], []
    for node in nodes:
        heading = node.select_one("h1, h2, h3, h4")
        text = text_clean(str(node), limit=5000, lines=True)
        if not text:
            continue
        anchor = node.get("id") or (heading.get("id") if heading else None)
        link = node.select_one("a[href]")
        url = urljoin(base_url, f"#{anchor}") if anchor else urljoin(base_url, link["href"]) if link else base_url
        # Bullets keep their own lines for feature extraction.
        lines = [text_clean(li.get_text(" ")) for li in node.select("li")]
        summary = "\n".join(line for line in lines if line) or text
        title = text_clean(heading.get_text(" "), limit=500) if heading else text[:120]
        digest = content_hash(title + summary)
        items.append(
            Item(title=title, url=url, summary=summary, published=None, source=source, external_id=f"entry:{digest}")
        )
    return Parsed(items=items, problems=problems)
