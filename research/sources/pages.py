"""News pages of labs that publish no feed (Anthropic, Meta AI): links to articles, found with
the source's `item_selector` (editable in the admin when the page's markup changes)."""

from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from . import Item, Parsed, ParseError, text_clean

DEFAULT_ITEM_SELECTOR = "article, a[href*='/news/'], a[href*='/blog/']"


def parse(*, body: bytes, source: str, base_url: str, item_selector: str = "") -> Parsed:
    soup = BeautifulSoup(body, "html.parser")
    selector = item_selector or DEFAULT_ITEM_SELECTOR
    nodes = soup.select(selector)
    if not nodes:
        raise ParseError(f"nothing matches {selector!r}: the page's markup has changed")
    items, seen, problems = [], set(), []
    index_path = urlsplit(base_url).path.rstrip("/")
    for node in nodes:
        link = node if node.name == "a" else node.select_one("a[href]")
        if link is None or not link.get("href"):
            continue
        url = urljoin(base_url, link["href"])
        if url in seen or urlsplit(url).path.rstrip("/") == index_path:
            continue
        heading = node.select_one("h1, h2, h3, h4")
        title = text_clean((heading or link).get_text(" "), limit=500)
        if not title:
            problems.append(f"a link without text skipped: {url}")
            continue
        seen.add(url)
        summary_node = node.select_one("p")
        items.append(
            Item(
                title=title,
                url=url,
                summary=text_clean(summary_node.get_text(" ")) if summary_node else "",
                published=None,
                source=source,
                external_id=url[:500],
            )
        )
    if not items:
        raise ParseError(f"{selector!r} matched, but no article link was found in it")
    return Parsed(items=items, problems=problems)
