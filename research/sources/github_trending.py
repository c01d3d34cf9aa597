"""GitHub trending (https://github.com/trending?since=daily): no API, so the page's markup is
read. Each repository is an `article.Box-row`; a page with none means the markup changed."""

import re
from datetime import UTC, datetime
from urllib.parse import urljoin

from bs4 import BeautifulSoup

from . import Item, Parsed, ParseError, text_clean

BASE = "https://github.com/"


def _number(text: str) -> float:
    match = re.search(r"[\d,]+", text)
    return float(match[0].replace(",", "")) if match else 0.0


def parse(*, body: bytes, source: str, fetched_at: datetime | None = None) -> Parsed:
    soup = BeautifulSoup(body, "html.parser")
    rows = soup.select("article.Box-row")
    if not rows:
        raise ParseError("no article.Box-row on the trending page: its markup has changed")
    items, problems = [], []
    for row in rows:
        link = row.select_one("h2 a[href]")
        if link is None:
            problems.append("a trending row without a repository link was skipped")
            continue
        path = link["href"].strip("/")
        description = row.select_one("p")
        language = row.select_one("[itemprop=programmingLanguage]")
        stars = row.select_one("a[href$='/stargazers']")
        today = row.select_one("span.float-sm-right")
        summary = " · ".join(
            part
            for part in (
                text_clean(description.get_text()) if description else "",
                text_clean(language.get_text()) if language else "",
                f"{text_clean(stars.get_text())} stars" if stars else "",
                text_clean(today.get_text()) if today else "",
            )
            if part
        )
        items.append(
            Item(
                title=path.replace("/", " / "),
                url=urljoin(BASE, path),
                summary=summary,
                # Trending has no date: an entry is news on the day it trends.
                published=fetched_at or datetime.now(tz=UTC),
                source=source,
                external_id=f"gh:{path.lower()}",
                signal=_number(today.get_text()) if today else 0.0,
            )
        )
    return Parsed(items=items, problems=problems)
