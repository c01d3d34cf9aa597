"""Metrics the owner's product pushes (POST /api/v1/metrics) and the revenue milestones they cross.

A counter adds to its running total, a gauge replaces it; the milestone check reads the total after
the write and announces each threshold once (MilestoneReached is unique per project and threshold).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from .models import EventType, MilestoneReached, ProductMetric, Severity
from .owner_alert import owner_alert

REVENUE = "revenue"


@dataclass(frozen=True)
class MetricPoint:
    name: str
    kind: str  # counter | gauge
    value: Decimal
    at: datetime | None = None


def metric_total(*, project_id: int, name: str) -> Decimal:
    """A counter's sum, or a gauge's latest value."""
    rows = ProductMetric.objects.filter(project_id=project_id, name=name)
    latest = rows.order_by("-recorded_at", "-id").first()
    if latest is None:
        return Decimal(0)
    if latest.kind == "gauge":
        return latest.value
    return rows.filter(kind="counter").aggregate(total=Sum("value"))["total"] or Decimal(0)


def milestones_check(*, project_id: int, name: str) -> list[Decimal]:
    """Thresholds of KAIZEN_REVENUE_MILESTONES `name` has now reached and had not before."""
    if name != REVENUE:
        return []
    total = metric_total(project_id=project_id, name=name)
    reached = []
    for threshold in sorted(settings.KAIZEN_REVENUE_MILESTONES):
        if total < threshold:
            break
        try:
            with transaction.atomic():
                MilestoneReached.objects.create(project_id=project_id, metric=name, threshold=threshold)
        except IntegrityError:
            continue  # announced before
        owner_alert(
            kind=EventType.REVENUE_MILESTONE, severity=Severity.P1, target=f"project:{project_id}",
            title=f"Revenue passed {threshold:,.0f}", body=f"Revenue is now {total:,.2f}.",
            dedupe_key=f"milestone:{project_id}:{name}:{threshold}", detail={"threshold": str(threshold)},
        )  # fmt: skip
        reached.append(threshold)
    return reached


class MetricKindConflict(ValueError):
    """A name sent as a counter and as a gauge: its total would mean nothing."""


def metrics_record(*, project_id: int, points: list[MetricPoint]) -> dict[str, object]:
    """Store every point (all or none) and check the milestones they may have crossed."""
    now = timezone.now()
    sent = {p.name: p.kind for p in points}
    if len({(p.name, p.kind) for p in points}) != len(sent):
        raise MetricKindConflict("A metric is sent both as a counter and as a gauge in one batch.")
    with transaction.atomic():
        stored = dict(
            ProductMetric.objects.filter(project_id=project_id, name__in=sent).values_list("name", "kind").distinct()
        )
        conflicts = sorted(name for name, kind in stored.items() if sent[name] != kind)
        if conflicts:
            raise MetricKindConflict(f"Already recorded with the other kind: {', '.join(conflicts)}.")
        ProductMetric.objects.bulk_create(
            [ProductMetric(project_id=project_id, name=p.name, kind=p.kind, value=p.value, recorded_at=p.at or now)
             for p in points]
        )  # fmt: skip
        reached = [
            m for name in sorted({p.name for p in points}) for m in milestones_check(project_id=project_id, name=name)
        ]
    return {"recorded": len(points), "milestones": [str(m) for m in reached]}
