"""Reddit through praw in read-only mode: the day's top posts of one subreddit. praw talks to
Reddit with its own requests session; the credentials are an app's (script type, no user)."""

from datetime import UTC, datetime

import praw
import prawcore
from django.conf import settings

from ..fetch import USER_AGENT, FetchError
from . import Item, Parsed, text_clean


def reddit_configured() -> bool:
    return bool(settings.REDDIT_CLIENT_ID and settings.REDDIT_CLIENT_SECRET)


def reddit_client() -> praw.Reddit:
    if not reddit_configured():
        raise FetchError("Reddit is off: REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET are not set", transient=False)
    connect, read = settings.KAIZEN_RESEARCH_TIMEOUT
    return praw.Reddit(
        client_id=settings.REDDIT_CLIENT_ID,
        client_secret=settings.REDDIT_CLIENT_SECRET,
        user_agent=USER_AGENT,
        check_for_updates=False,  # no call to PyPI from a worker
        timeout=int(max(connect, read)),
        ratelimit_seconds=5,
    )


def fetch(*, subreddit: str, source: str, limit: int = 25) -> Parsed:
    reddit = reddit_client()
    reddit.read_only = True
    try:
        posts = list(reddit.subreddit(subreddit).top(time_filter="day", limit=limit))
    except prawcore.exceptions.ServerError as exc:
        raise FetchError(f"r/{subreddit}: Reddit server error {exc}", transient=True) from exc
    except prawcore.exceptions.TooManyRequests as exc:
        raise FetchError(f"r/{subreddit}: rate limited", transient=True) from exc
    except prawcore.exceptions.RequestException as exc:
        raise FetchError(f"r/{subreddit}: {exc}", transient=True) from exc
    except prawcore.exceptions.PrawcoreException as exc:  # 401/403/404: credentials or a gone subreddit
        raise FetchError(f"r/{subreddit}: {exc}", transient=False) from exc
    items = [
        Item(
            title=text_clean(post.title, limit=500),
            url=post.url if not post.is_self else f"https://www.reddit.com{post.permalink}",
            summary=text_clean(post.selftext or ""),
            published=datetime.fromtimestamp(post.created_utc, tz=UTC),
            source=source,
            external_id=f"reddit:{post.id}",
            signal=float(post.score),
        )
        for post in posts
        if not post.stickied
    ]
    return Parsed(items=items)
