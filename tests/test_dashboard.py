"""The console's front page: the dashboard above the stock app list, its refresh fragment, its
health panel against the real broker, and the server-drawn charts."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kaizen_site.celery import app
from kaizen_site.charts import bar_chart, line_chart, nice_ceiling
from kaizen_site.dashboard import system_health
from tests.factories import IssueFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_the_index_shows_the_dashboard_and_still_lists_the_apps(admin_client):
    IssueFactory(stage="escalated")

    page = admin_client.get("/admin/").content.decode()

    assert 'id="kz-dashboard"' in page
    assert page.index('id="kz-dashboard"') < page.index('id="content-main"')  # above the app list
    assert 'href="/admin/healing/issue/"' in page and "Recent actions" in page  # the stock index, kept
    assert re.search(r"Issues needing you <b>1</b>", page)
    assert 'href="/admin/healing/issue/?stage__in=escalated,aborted"' in page
    assert "kaizen/console.css" in page and "kaizen/dashboard.js" in page


def test_the_refresh_fragment_is_the_dashboard_alone(admin_client):
    response = admin_client.get("/admin/dashboard/")

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="kz-dashboard"') and "<html" not in body
    assert "no-cache" in response["Cache-Control"]


def test_the_fragment_is_for_console_users_only(client, django_user_model):
    assert client.get("/admin/dashboard/")["Location"].startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("someone", password="x"))  # not staff
    assert client.get("/admin/dashboard/")["Location"].startswith("/admin/login/")


def test_the_fragment_answers_only_get(admin_client):
    assert admin_client.post("/admin/dashboard/").status_code == 405


def _index_queries(admin_client, *, issues: int) -> int:
    project = ProjectFactory()
    now = timezone.now()
    for n in range(issues):
        IssueFactory(project=project, first_seen=now - timedelta(hours=n), stage=("resolved", "escalated")[n % 2],
                     resolved_at=now if n % 2 == 0 else None)  # fmt: skip
    admin_client.get("/admin/")  # the worker answer and the session, cached by the first render
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get("/admin/").status_code == 200
    return len(queries)


def test_the_index_costs_the_same_number_of_queries_with_more_issues(admin_client):
    assert _index_queries(admin_client, issues=10) == _index_queries(admin_client, issues=90)


def test_health_shows_each_queues_depth_from_the_broker_and_says_when_no_worker_takes_it():
    app.send_task("kaizen.test.nothing", queue="P3")  # no worker runs in the test: it stays queued

    health = system_health()

    queues = {queue["name"]: queue for queue in health["queues"]}
    assert set(queues) == {queue.name for queue in app.conf.task_queues}
    assert queues["P3"]["depth"] == 1 and queues["P0"]["depth"] == 0
    assert queues["P3"]["workers"] == [] and health["ok"] is False
    assert health["checks"]["database"]["ok"] and health["checks"]["broker"]["ok"]


# --- Charts -------------------------------------------------------------------------------------


def test_nice_ceiling_rounds_up_to_one_two_or_five():
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 12, 480)] == [1, 0.5, 1, 5, 10, 20, 500]


def test_bars_stack_in_proportion_and_each_carries_its_label():
    svg = str(bar_chart(label="Issues <per> day", columns=["Mon", "Tue"], series=[("P0", [1, 0]), ("P1", [1, 2])]))

    heights = [float(h) for h in re.findall(r'<rect class="kz-s\d"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 3  # the zero is not drawn
    assert heights[2] == pytest.approx(2 * heights[0])  # Tue's P1 (2) against Mon's P0 (1)
    assert 'role="img" aria-label="Issues &lt;per&gt; day"' in svg
    assert "<title>Tue: 2 P1</title>" in svg


def test_a_line_breaks_where_a_day_has_no_value():
    svg = str(line_chart(label="MTTR", columns=["a", "b", "c", "d"], values=[60, None, 120, 90]))

    path = re.search(r'<path class="kz-line" d="([^"]+)"', svg).group(1)
    assert path.count("M") == 2 and path.count("L") == 1
    assert svg.count("<circle") == 3
