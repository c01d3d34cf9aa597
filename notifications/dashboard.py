"""The product's own figures on the console's dashboard, from the metrics it pushes
(POST /api/v1/metrics): builds and revenue over the last 24 hours, and its response time.

The names are a convention the product follows when it pushes: `builds` and `revenue` as
counters (each point an increment), `response_ms` as a gauge (each point a measured mean). A
name pushed as the other kind is still shown, as its mean (a gauge's increments mean nothing).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncHour

from .models import ProductMetric
from .product_metrics import REVENUE

BUILDS = "builds"
RESPONSE_MS = "response_ms"
HOURS = 24  # the current hour and the 23 before it


def product_figures(*, now: datetime) -> dict[str, Any]:
    """Per metric: the HOURS-hour total (counter) or mean (gauge), and one value per hour, oldest
    first. One query, grouped by hour: at most 24 rows per name whatever the push rate."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - timedelta(hours=n) for n in range(HOURS - 1, -1, -1)]
    rows = list(
        ProductMetric.objects.filter(name__in=(BUILDS, REVENUE, RESPONSE_MS), recorded_at__gte=hours[0])
        .annotate(hour=TruncHour("recorded_at"))
        .values("name", "kind", "hour")
        .annotate(total=Sum("value"), points=Count("id"))
    )
    metrics: dict[str, Any] = {}
    for name in (BUILDS, REVENUE, RESPONSE_MS):
        mine = [row for row in rows if row["name"] == name]
        counter = all(row["kind"] == "counter" for row in mine)
        by_hour = {row["hour"]: row for row in mine}
        hourly = [
            float(by_hour[h]["total"] / (1 if counter else by_hour[h]["points"])) if h in by_hour else 0.0
            for h in hours
        ]
        total = sum(float(row["total"]) for row in mine)
        points = sum(row["points"] for row in mine)
        value = total if counter else (total / points if points else None)
        metrics[name] = {"value": value if mine else None, "kind": "counter" if counter else "gauge", "hourly": hourly}
    return {"hours": hours, **metrics}
