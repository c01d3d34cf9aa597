"""The console's front page: system health from the site itself, the rest from the apps.

Each app registers the figures it owns (its AppConfig.ready calls `dashboard_register`), as it
registers its scrape-time metrics with `ops`: the site shows them without importing the app.
Every figure function takes `now` and runs a fixed number of queries whatever the data's size;
the panel templates read the dictionaries they return.
"""

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone

from kaizen_site import ops
from kaizen_site.celery import app, worker_group
from kaizen_site.charts import bar_chart as charts_bars
from kaizen_site.charts import line_chart as charts_line

logger = logging.getLogger("kaizen.console")

# A worker that does not answer the broadcast within this is reported missing. Every inspect waits
# the whole timeout (it cannot know how many workers exist), so the answer is cached for a while:
# refreshing consoles share one broadcast instead of each waiting for its own.
WORKERS_TIMEOUT = 0.5
WORKERS_CACHE_SECONDS = 20
WORKERS_CACHE_KEY = "kaizen:dashboard:workers"

# How often an open dashboard fetches fresh figures (kaizen/dashboard.js).
REFRESH_SECONDS = 30

Figures = Callable[..., dict[str, Any]]
_sources: dict[str, Figures] = {}


def dashboard_register(name: str, figures: Figures) -> None:
    """`figures(now=…)` fills the panel named `name`: called on every render of the dashboard."""
    _sources[name] = figures


def workers_ask(*, timeout: float = WORKERS_TIMEOUT) -> dict[str, list[str]]:
    """Queue → the worker groups consuming it (celery.worker_group), from one broadcast to every worker."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    consumers: dict[str, set[str]] = {}
    for hostname, queues in replies.items():
        for queue in queues:
            consumers.setdefault(queue["name"], set()).add(worker_group(hostname))
    return {queue: sorted(groups) for queue, groups in consumers.items()}


def workers_by_queue() -> dict[str, Any]:
    """`workers_ask`, shared for WORKERS_CACHE_SECONDS; says when it was asked."""
    cached = cache.get(WORKERS_CACHE_KEY)
    if cached is None:
        try:
            cached = {"consumers": workers_ask(), "asked_at": time.time(), "error": ""}
        except Exception as exc:  # noqa: BLE001 - a broker outage is what this panel must show, not raise
            cached = {"consumers": {}, "asked_at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
        cache.set(WORKERS_CACHE_KEY, cached, WORKERS_CACHE_SECONDS)
    return cached


def system_health() -> dict[str, Any]:
    """Database, broker and Redis checks; per queue its depth and the worker groups taking it."""
    checks = ops.health_checks()
    try:
        depths, depth_error = ops.queue_depths(), ""
    except Exception as exc:  # noqa: BLE001 - as above: the broker being down is the news
        depths, depth_error = {}, f"{type(exc).__name__}: {exc}"
    workers = workers_by_queue()
    queues = [
        {"name": queue.name, "depth": depths.get(queue.name), "workers": workers["consumers"].get(queue.name, [])}
        for queue in app.conf.task_queues
    ]
    return {
        "checks": checks,
        "ok": all(c["ok"] for c in checks.values()) and all(q["workers"] for q in queues),
        "queues": queues,
        "depth_error": depth_error,
        "workers_error": workers["error"],
        "workers_age": int(time.time() - workers["asked_at"]),
    }


def dashboard_figures(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows. A panel whose queries fail says so; the others still show."""
    now = now or timezone.now()
    figures: dict[str, Any] = {"now": now, "health": system_health()}
    for name, source in _sources.items():
        try:
            figures[name] = source(now=now)
        except DatabaseError as exc:
            logger.warning("dashboard panel unavailable", extra={"panel": name, "error": str(exc)})
            figures[name] = {"error": str(exc)}
    return figures


def duration_label(seconds: float) -> str:
    """MTTR as the owner reads it: minutes under two hours, then hours, then days."""
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def dashboard_charts(figures: dict[str, Any]) -> dict[str, Any]:
    """The SVG charts of the panels present: MTTR and issues per day (14 days), builds and revenue
    per hour (24 hours)."""
    charts: dict[str, Any] = {}
    issues = figures.get("issues")
    if issues and "error" not in issues:
        days = [f"{row['day']:%d %b}" for row in issues["mttr"]]
        charts["mttr"] = charts_line(
            label="Mean time to resolve, per day, last 14 days",
            columns=days,
            values=[row["seconds"] for row in issues["mttr"]],
            fmt=duration_label,
        )
        charts["per_day"] = charts_bars(
            label="New issues per day by severity, last 14 days",
            columns=days,
            series=[(severity, [row[severity] for row in issues["per_day"]]) for severity in ("P0", "P1", "P2", "P3")],
        )
    product = figures.get("product")
    if product and "error" not in product:
        hours = [f"{hour:%H}h" for hour in product["hours"]]
        for name in ("builds", "revenue"):
            if product[name]["value"] is not None:
                charts[name] = charts_bars(
                    label=f"{name.capitalize()} per hour, last 24 hours",
                    columns=hours,
                    series=[(name, product[name]["hourly"])],
                    palette="kz-m",
                )
    return charts


def dashboard_context(*, now: datetime | None = None) -> dict[str, Any]:
    """What the dashboard's template reads: the figures, their charts, the refresh period."""
    figures = dashboard_figures(now=now)
    return {"figures": figures, "charts": dashboard_charts(figures), "refresh_seconds": REFRESH_SECONDS}
