"""One fetcher module per source kind, all returning the same normalized `Item`."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bs4 import BeautifulSoup

# Query parameters that only track the click: two links differing in them are the same page.
TRACKING_PARAMS = re.compile(r"^(utm_.*|ref|ref_src|fbclid|gclid|mc_cid|mc_eid|source)$", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    title: str
    url: str
    summary: str
    published: datetime | None
    source: str
    external_id: str
    signal: float = 0.0  # points, stars today, upvotes: the source's own measure of interest


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # recorded, but the items still count


class ParseError(Exception):
    """The payload could not be read at all (not a feed, the page's markup changed)."""


def canonical_url(url: str, *, keep_fragment: bool = False) -> str:
    """Lower-case scheme and host, no tracking parameters, no trailing slash, and no fragment
    unless it names the item (the entries of a one-page changelog differ only by it)."""
    parts = urlsplit(url.strip())
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not TRACKING_PARAMS.match(k)))
    path = parts.path.rstrip("/") or "/"
    host = parts.netloc.lower().removeprefix("www.")
    return urlunsplit((parts.scheme.lower() or "https", host, path, query, parts.fragment if keep_fragment else ""))


BLOCKS = ("p", "li", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article")


def text_clean(value: str, *, limit: int = 2000, lines: bool = False) -> str:
    """Plain text from a summary that may hold HTML. `lines`: one line per block element (a
    changelog's bullets stay apart for feature extraction); otherwise one line."""
    if "<" in value:
        soup = BeautifulSoup(value, "html.parser")
        for block in soup.find_all(BLOCKS):
            block.insert_after("\n")
        value = soup.get_text("")
    if lines:
        rows = (re.sub(r"[ \t\r\f\v]+", " ", row).strip() for row in value.split("\n"))
        return "\n".join(row for row in rows if row)[:limit]
    return re.sub(r"\s+", " ", value).strip()[:limit]
