"""The product's figures on the console's dashboard, from the metrics it pushed."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.dashboard import product_figures
from notifications.models import ProductMetric
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 15, 20, tzinfo=UTC)


def push(project, name, kind, value, *, hours_ago: float):
    ProductMetric.objects.create(
        project=project, name=name, kind=kind, value=Decimal(value), recorded_at=NOW - timedelta(hours=hours_ago)
    )


def test_counters_are_summed_over_the_last_24_hours_and_per_hour():
    one, other = ProjectFactory(), ProjectFactory()
    push(one, "builds", "counter", 3, hours_ago=0.1)  # this hour
    push(other, "builds", "counter", 2, hours_ago=0.2)  # every project counts
    push(one, "builds", "counter", 4, hours_ago=5)
    push(one, "builds", "counter", 100, hours_ago=30)  # before the window
    push(one, "revenue", "counter", "19.90", hours_ago=1)

    figures = product_figures(now=NOW)

    assert figures["builds"]["value"] == 9
    assert figures["builds"]["hourly"][-1] == 5 and figures["builds"]["hourly"][-6] == 4
    assert len(figures["builds"]["hourly"]) == len(figures["hours"]) == 24
    assert figures["hours"][-1] == datetime(2026, 11, 30, 15, tzinfo=UTC)
    assert figures["revenue"]["value"] == pytest.approx(19.9)


def test_response_time_is_the_mean_of_the_pushed_gauge_and_absent_names_show_nothing():
    project = ProjectFactory()
    push(project, "response_ms", "gauge", 100, hours_ago=0.5)
    push(project, "response_ms", "gauge", 300, hours_ago=2)

    figures = product_figures(now=NOW)

    assert figures["response_ms"]["value"] == 200
    assert figures["response_ms"]["kind"] == "gauge"
    assert figures["builds"]["value"] is None and figures["revenue"]["value"] is None


def test_one_query_whatever_the_number_of_points():
    project = ProjectFactory()
    counts = []
    for points in (10, 100):
        for n in range(points):
            push(project, "builds", "counter", 1, hours_ago=n / 10)
        with CaptureQueriesContext(connection) as queries:
            product_figures(now=NOW)
        counts.append(len(queries))
    assert counts == [1, 1]
