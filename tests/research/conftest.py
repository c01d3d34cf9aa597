"""Research fixtures: sources, keywords, and payloads written in the shape of the real ones
(feeds, the GitHub trending page, HN items, a changelog page)."""

import importlib
import json

import pytest
from django.apps import apps

from research.models import Keyword, Source

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Lab blog</title><id>urn:lab</id><updated>2026-11-29T10:00:00Z</updated>
  <entry>
    <title>Claude agents learn to use the browser</title>
    <link rel="alternate" href="https://lab.example/blog/agents-browser?utm_source=rss"/>
    <id>urn:uuid:1111</id><updated>2026-11-29T09:30:00+01:00</updated>
    <summary type="html">&lt;p&gt;Agents can now &lt;b&gt;click&lt;/b&gt; through web apps.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Quarterly gardening report</title>
    <link rel="alternate" href="https://lab.example/blog/gardening"/>
    <id>urn:uuid:2222</id><updated>2026-11-28T08:00:00Z</updated>
    <content type="html">&lt;p&gt;Tomatoes did well.&lt;/p&gt;</content>
  </entry>
</feed>"""

RSS_ODD = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>News</title><link>https://news.example/</link>
  <item>
    <title>New LLM inference API for web developers</title>
    <link>https://news.example/llm-api</link>
    <guid isPermaLink="false">news-1</guid>
    <pubDate>Sun, 29 Nov 2026 07:00:00 PST</pubDate>
    <description><![CDATA[<div><p>Faster <a href="https://x">tokens</a></p><ul><li>Streaming</li></ul></div>]]></description>
  </item>
  <item>
    <title>Two-digit year and no weekday</title>
    <link>https://news.example/odd-date</link>
    <pubDate>29 Nov 26 13:45 GMT</pubDate>
    <description>plain text</description>
  </item>
  <item>
    <title>No date at all</title>
    <link>https://news.example/no-date</link>
  </item>
  <item><description>an item with neither title nor link</description></item>
</channel></rss>"""

BOZO_WITH_ENTRIES = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
<item><title>Agent tooling &amp more</title><link>https://bozo.example/a</link></item>
</channel>"""  # an unescaped & and an unclosed <rss>

NOT_A_FEED = b"<html><body><h1>Service unavailable</h1></body></html>"


def trending_row(owner: str, name: str, description: str, today: str) -> str:
    return f"""<article class="Box-row">
  <h2 class="h3 lh-condensed"><a href="/{owner}/{name}" class="Link">
    <span class="text-normal">{owner} /</span> {name}</a></h2>
  <p class="col-9 color-fg-muted my-1 pr-4">{description}</p>
  <div class="f6 color-fg-muted mt-2">
    <span itemprop="programmingLanguage">Python</span>
    <a href="/{owner}/{name}/stargazers" class="Link Link--muted d-inline-block mr-3">12,244</a>
    <span class="d-inline-block float-sm-right">{today} stars today</span>
  </div>
</article>"""


TRENDING = (
    "<html><body><main>"
    + trending_row("acme", "agent-kit", "An AI agent toolkit for web apps", "4,007")
    + trending_row("someone", "dotfiles", "My configuration", "12")
    + "<article class='Box-row'><p>row without a link</p></article></main></body></html>"
).encode()


def changelog_page(*entries: tuple[str, str, list[str]]) -> bytes:
    body = "".join(
        f'<article id="{anchor}"><h2>{title}</h2><ul>{"".join(f"<li>{b}</li>" for b in bullets)}</ul></article>'
        for anchor, title, bullets in entries
    )
    return f"<html><body><main>{body}</main></body></html>".encode()


def hn_item(item_id: int, title: str, *, url: str | None = None, score: int = 100, kind: str = "story") -> bytes:
    data = {"by": "pg", "descendants": 3, "id": item_id, "kids": [1], "score": score, "time": 1_790_000_000,
            "title": title, "type": kind}  # fmt: skip
    if url:
        data["url"] = url
    return json.dumps(data).encode()


@pytest.fixture
def keywords(db):
    """A known, small keyword list in place of the seeded one."""
    Keyword.objects.all().delete()
    Keyword.objects.bulk_create([Keyword(word=w) for w in ("ai", "llm", "agent", "agents", "web", "api")])


@pytest.fixture
def seeded(db):
    """The migration's seed (sources, keywords, the 06:00 task), put back after a flush."""
    if not Source.objects.exists():
        importlib.import_module("research.migrations.0001_initial").seed(apps, None)


@pytest.fixture
def fast_backoff(settings):
    settings.KAIZEN_RESEARCH_BACKOFF_SECONDS = 60
    settings.KAIZEN_RESEARCH_BACKOFF_MAX_SECONDS = 3600
    settings.KAIZEN_RESEARCH_MAX_ERRORS = 3
    return settings
