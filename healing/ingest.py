"""Accepting problem reports: the path every endpoint shares after parsing.

A report is validated, fingerprinted (so the answer can name its issue) and made durable before
the 2xx: appended to the Redis stream that `healing.stream` drains into the database in batches
(the "stream" mode, chosen when Redis is there), or written in its own transaction ("direct").
"""

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from pydantic import ValidationError
from rest_framework.exceptions import Throttled

from . import outbox, redis_client, store
from .errors import IngestError
from .fingerprint import fingerprint_report
from .models import issue_id_for
from .projects import ProjectAuth
from .redact import report_credentials_redact
from .schemas import IssueReport

logger = logging.getLogger("kaizen.ingest")


@dataclass(frozen=True)
class Accepted:
    event_id: str
    issue_id: str
    stage: str


def report_validate(data: Any) -> dict[str, Any]:
    """Validate a native report; returns it as plain JSON-compatible data."""
    if not isinstance(data, dict):
        raise IngestError("invalid_report", "A report is a JSON object.")
    try:
        return IssueReport.model_validate(data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise IngestError("invalid_report", errors) from None


def record_build(*, project: ProjectAuth, report: dict[str, Any], source: str) -> dict[str, Any]:
    """The unit the stream and the store exchange: the report plus where it belongs."""
    report_credentials_redact(report=report)  # before anything is stored, streamed or fingerprinted
    fingerprint = fingerprint_report(report)
    event_id = report.get("event_id") or str(uuid.uuid4())
    report["event_id"] = event_id
    return {
        "event_id": event_id,
        "project_id": project.project_id,
        "issue_id": str(issue_id_for(project_id=project.project_id, fingerprint=fingerprint.hash)),
        "fingerprint": fingerprint.hash,
        "grouping": fingerprint.grouping,
        "source": source,
        "received_at": time.time(),
        "report": report,
    }


def reports_accept(*, project: ProjectAuth, reports: Sequence[dict[str, Any]], source: str) -> list[Accepted]:
    """Take the project's quota for the reports and make them durable; returns what the client is
    told. Over the quota, nothing is stored and Throttled (429 + Retry-After) is raised."""
    if not reports:
        return []
    records = [record_build(project=project, report=report, source=source) for report in reports]
    window = _quota_window()
    if settings.KAIZEN_INGEST_MODE == "stream":
        appended = redis_client.get().append_within_quota(
            stream=settings.KAIZEN_INGEST_STREAM,
            quota_key=window.key(project),
            quota=project.rate_limit_per_minute,
            ttl=QUOTA_WINDOW_SECONDS + 1,
            payloads=[orjson.dumps(r) for r in records],
        )
        if not appended:
            raise Throttled(wait=window.retry_after)
        stage = "received"
    else:
        if not _quota_take(project=project, window=window, count=len(records)):
            raise Throttled(wait=window.retry_after)
        with transaction.atomic():
            result = store.reports_store(records=records)
            transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue=result.to_enqueue))
        stage = "detected"
    return [Accepted(event_id=r["event_id"], issue_id=r["issue_id"], stage=stage) for r in records]


QUOTA_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class QuotaWindow:
    """A fixed one-minute window per project. Over-quota reports are refused after parsing (the
    quota is taken in the same round trip as the append), which keeps the accepted path to one
    call to Redis."""

    index: int
    retry_after: int  # seconds until the window ends

    def key(self, project: ProjectAuth) -> str:
        return f"kaizen:quota:{project.project_id}:{self.index}"


def _quota_window() -> QuotaWindow:
    now = time.time()
    return QuotaWindow(
        index=int(now // QUOTA_WINDOW_SECONDS),
        retry_after=max(1, QUOTA_WINDOW_SECONDS - int(now % QUOTA_WINDOW_SECONDS)),
    )


def _quota_take(*, project: ProjectAuth, window: QuotaWindow, count: int) -> bool:
    """Direct mode: counted in Redis when there is one, else in the process-local cache (the
    embedded default runs one machine, where an approximate quota is enough)."""
    key = window.key(project)
    if settings.REDIS_URL:
        client = redis_client.get().client
        used = client.incrby(key, count)
        if used == count:
            client.expire(key, QUOTA_WINDOW_SECONDS + 1)
    else:
        cache.add(key, 0, timeout=QUOTA_WINDOW_SECONDS + 1)
        used = cache.incr(key, count)
    return used <= project.rate_limit_per_minute
