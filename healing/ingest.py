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

from . import outbox, redis_client, store
from .errors import IngestError
from .fingerprint import fingerprint_report
from .models import issue_id_for
from .projects import ProjectAuth
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
    """Make validated reports durable; returns what the client is told."""
    records = [record_build(project=project, report=report, source=source) for report in reports]
    if not records:
        return []
    if settings.KAIZEN_INGEST_MODE == "stream":
        redis_client.get().xadd_many(settings.KAIZEN_INGEST_STREAM, [orjson.dumps(r) for r in records])
        stage = "received"
    else:
        with transaction.atomic():
            result = store.reports_store(records=records)
            transaction.on_commit(lambda: outbox.issues_enqueue(to_enqueue=result.to_enqueue))
        stage = "detected"
    return [Accepted(event_id=r["event_id"], issue_id=r["issue_id"], stage=stage) for r in records]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int  # seconds until the current window ends


def rate_limit_take(*, project: ProjectAuth, count: int = 1) -> RateDecision:
    """A fixed one-minute window per project, counted in Redis (shared by every process) or, on
    the embedded default, in the process-local cache."""
    now = time.time()
    window = int(now // 60)
    retry_after = max(1, 60 - int(now % 60))
    key = f"kaizen:rate:{project.project_id}:{window}"
    if settings.REDIS_URL:
        used = redis_client.get().incr_window(key, count, ttl=61)
    else:
        cache.add(key, 0, timeout=61)
        used = cache.incr(key, count)
    return RateDecision(allowed=used <= project.rate_limit_per_minute, retry_after=retry_after)
