"""Fetching one source: politeness (backoff, conditional GET, once a day), parsing by kind,
dedupe, the relevance filter and, for changelogs, the competitor monitor. One source's failure
is recorded on it and never stops the others.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from . import competitors
from .alerts import source_disabled_alert
from .fetch import FetchError, http_get
from .models import FetchOutcome, ResearchRun, Source, SourceFetch, SourceItem, SourceKind
from .relevance import is_relevant, keyword_pattern
from .schedule import owner_today
from .sources import (
    Item,
    Parsed,
    ParseError,
    canonical_url,
    changelog,
    feeds,
    github_trending,
    hackernews,
    pages,
    reddit,
)

logger = logging.getLogger(__name__)

HN_DEFAULT_LIMIT = 30


@dataclass
class CollectResult:
    source: str
    outcome: str
    items: int = 0
    new: int = 0
    relevant: int = 0
    seconds: float = 0.0
    error: str = ""
    problems: list[str] = field(default_factory=list)
    fetched: list[Item] = field(default_factory=list)  # what a dry run would have stored


def _hackernews(source: Source) -> tuple[Parsed | None, str, str]:
    limit = int(source.params.get("limit", HN_DEFAULT_LIMIT))
    top = http_get(url=source.url, etag=source.etag, last_modified=source.last_modified, accept="application/json")
    if top.not_modified:
        return None, top.etag, top.last_modified
    base = source.url.rsplit("/", 1)[0]
    parsed = Parsed()
    for story_id in hackernews.story_ids(body=top.body, limit=limit):
        try:
            item = hackernews.story(body=http_get(url=f"{base}/item/{story_id}.json").body, source=source.name)
        except (FetchError, ParseError) as exc:
            parsed.problems.append(f"story {story_id}: {exc}")  # one missing story is not the source failing
            continue
        if item is not None:
            parsed.items.append(item)
    return parsed, top.etag, top.last_modified


def _fetch_and_parse(source: Source) -> tuple[Parsed | None, str, str]:
    """The parsed payload and the new validators; None for a 304."""
    if source.kind == SourceKind.REDDIT:
        limit = int(source.params.get("limit", 25))
        return reddit.fetch(subreddit=source.params["subreddit"], source=source.name, limit=limit), "", ""
    if source.kind == SourceKind.HACKERNEWS:
        return _hackernews(source)
    fetched = http_get(url=source.url, etag=source.etag, last_modified=source.last_modified)
    if fetched.not_modified:
        return None, fetched.etag, fetched.last_modified
    body, name = fetched.body, source.name
    if source.kind == SourceKind.FEED:
        parsed = feeds.parse(body=body, source=name, base_url=fetched.url)
    elif source.kind == SourceKind.GITHUB_TRENDING:
        parsed = github_trending.parse(body=body, source=name)
    elif source.kind == SourceKind.PAGE:
        parsed = pages.parse(
            body=body, source=name, base_url=fetched.url, item_selector=source.params.get("item_selector", "")
        )
    else:
        parsed = changelog.parse(
            body=body, source=name, base_url=fetched.url, entry_selector=source.params.get("entry_selector", "")
        )
    return parsed, fetched.etag, fetched.last_modified


def backoff_seconds(*, errors: int) -> int:
    """base × 2^(errors−1), capped: 15 min, 30 min, 1 h … at most a day by default."""
    base, cap = settings.KAIZEN_RESEARCH_BACKOFF_SECONDS, settings.KAIZEN_RESEARCH_BACKOFF_MAX_SECONDS
    return int(min(cap, base * 2 ** max(errors - 1, 0)))


def skip_reason(*, source: Source, now: datetime, force: bool = False) -> str:
    """Why `source` is not fetched now; empty when it is due."""
    if not source.enabled:
        return f"disabled: {source.disabled_reason or 'by the owner'}"
    if source.kind == SourceKind.REDDIT and not reddit.reddit_configured():
        return "off: REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET are not set"
    if source.next_attempt_at and source.next_attempt_at > now:
        return f"backing off until {source.next_attempt_at:%Y-%m-%d %H:%M} UTC after {source.consecutive_errors} errors"
    if not force and source.last_success_at and owner_today(now=source.last_success_at) == owner_today(now=now):
        return "already fetched today"
    return ""


def _record_failure(*, source: Source, error: FetchError | ParseError, now: datetime) -> None:
    transient = getattr(error, "transient", False)
    # A permanent failure (404, markup gone) will not fix itself: it counts double towards disable.
    step = 1 if transient else 2
    Source.objects.filter(pk=source.pk).update(
        consecutive_errors=F("consecutive_errors") + step, last_fetched_at=now, last_error=str(error)[:2000]
    )
    source.refresh_from_db(fields=["consecutive_errors", "enabled"])
    errors = source.consecutive_errors
    if errors >= settings.KAIZEN_RESEARCH_MAX_ERRORS:
        reason = f"{errors} failures in a row; last: {error}"
        # Conditional: only the first worker to cross the threshold disables it and tells the owner.
        if Source.objects.filter(pk=source.pk, enabled=True).update(enabled=False, disabled_reason=reason[:2000]):
            source_disabled_alert(source=source, reason=reason)
    else:
        Source.objects.filter(pk=source.pk).update(
            next_attempt_at=now + timedelta(seconds=backoff_seconds(errors=errors))
        )


def _store(*, source: Source, items: list[Item], now: datetime) -> tuple[int, int]:
    """Insert the items not seen before (by canonical URL, or by this source's external id);
    returns (new, new relevant). One query to find what is known and one bulk insert: a feed of
    hundreds of items costs three round trips, not hundreds."""
    pattern = keyword_pattern()
    fresh: dict[str, SourceItem] = {}
    anchored = source.kind == SourceKind.CHANGELOG
    for item in items:
        canonical = canonical_url(item.url, keep_fragment=anchored)[:1000]
        fresh.setdefault(
            canonical,
            SourceItem(
                source=source, external_id=item.external_id, canonical_url=canonical, url=item.url[:1000],
                title=item.title[:500], summary=item.summary, published=item.published, fetched_at=now,
                relevant=is_relevant(text=f"{item.title} {item.summary}", pattern=pattern), signal=item.signal,
            ),
        )  # fmt: skip
    known = SourceItem.objects.filter(
        Q(canonical_url__in=list(fresh)) | Q(source=source, external_id__in=[row.external_id for row in fresh.values()])
    ).values_list("canonical_url", "external_id", "source_id")
    seen_urls = {url for url, _, _ in known}
    seen_ids = {external for _, external, source_id in known if source_id == source.pk}
    rows = [row for url, row in fresh.items() if url not in seen_urls and row.external_id not in seen_ids]
    # A concurrent source inserting the same URL meanwhile is skipped by the unique index.
    SourceItem.objects.bulk_create(rows, ignore_conflicts=True)
    inserted = SourceItem.objects.filter(
        source=source, fetched_at=now, canonical_url__in=[r.canonical_url for r in rows]
    )
    return inserted.count(), inserted.filter(relevant=True).count()


def source_collect(
    *, source: Source, run: ResearchRun | None, dry_run: bool = False, force: bool = False
) -> CollectResult:
    """Fetch, parse and store one source. Never raises for the source's own failures."""
    started = time.monotonic()
    now = timezone.now()
    result = CollectResult(source=source.name, outcome=FetchOutcome.SKIPPED)
    reason = skip_reason(source=source, now=now, force=force or dry_run)
    if reason:
        result.error = reason
        return _finish(result=result, run=run, source=source, started=started, dry_run=dry_run)
    try:
        try:
            parsed, etag, modified = _fetch_and_parse(source)
        except (FetchError, ParseError):
            raise
        except Exception as exc:
            # Isolation boundary: a parser bug or a source edited into nonsense in the admin
            # (missing params) fails this source, recorded with its traceback, never the run.
            logger.exception("research source crashed", extra={"source": source.name})
            raise ParseError(f"unexpected {type(exc).__name__}: {exc}") from exc
    except (FetchError, ParseError) as exc:
        result.outcome, result.error = FetchOutcome.ERROR, str(exc)
        logger.warning("research source failed", extra={"source": source.name, "error": str(exc)})
        if not dry_run:
            _record_failure(source=source, error=exc, now=now)
        return _finish(result=result, run=run, source=source, started=started, dry_run=dry_run)
    if parsed is None:
        result.outcome = FetchOutcome.NOT_MODIFIED
    else:
        result.outcome, result.items, result.problems = FetchOutcome.OK, len(parsed.items), parsed.problems
        if dry_run:
            result.fetched = parsed.items
        else:
            result.new, result.relevant = _store(source=source, items=parsed.items, now=now)
            if source.kind == SourceKind.CHANGELOG:
                competitors.changelog_update(source=source, items=parsed.items)
    if not dry_run:
        Source.objects.filter(pk=source.pk).update(
            etag=etag[:500], last_modified=modified[:100], last_fetched_at=now, last_success_at=now,
            consecutive_errors=0, next_attempt_at=None, last_error="",
        )  # fmt: skip
    return _finish(result=result, run=run, source=source, started=started, dry_run=dry_run)


def _finish(
    *, result: CollectResult, run: ResearchRun | None, source: Source, started: float, dry_run: bool
) -> CollectResult:
    result.seconds = time.monotonic() - started
    if run is not None and not dry_run:
        SourceFetch.objects.update_or_create(
            run=run,
            source=source,
            defaults=dict(
                outcome=result.outcome, items=result.items, new=result.new, relevant=result.relevant,
                duration_ms=int(result.seconds * 1000), error=result.error[:2000], problems=result.problems[:50],
            ),
        )  # fmt: skip
    return result
