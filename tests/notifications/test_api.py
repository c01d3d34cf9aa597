"""The owner's notification API, the Beams token and the product metrics endpoint, bad input included."""

import json
from decimal import Decimal

import jwt
import pytest

from notifications.channels.push import beams_user_id
from notifications.models import Device, MilestoneReached, Notification, ProductMetric

pytestmark = pytest.mark.django_db


def post_json(client, url, body, **extra):
    return client.post(url, data=json.dumps(body) if not isinstance(body, str) else body,
                       content_type="application/json", **extra)  # fmt: skip


def delete_json(client, url, body):
    return client.delete(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def history(db):
    return [
        Notification.objects.create(kind="issue_detected", severity=s, title=f"Alert {n}")
        for n, s in enumerate(["P0", "P1", "P2", "P3"])
    ]


def test_history_newest_first_with_unread_filter_and_paging(owner_client, history):
    Notification.objects.filter(pk=history[0].pk).update(read_at="2026-01-01T00:00:00Z")

    everything = owner_client.get("/api/v1/notifications").json()
    unread = owner_client.get("/api/v1/notifications?unread=true").json()
    page = owner_client.get(f"/api/v1/notifications?limit=2&before={history[3].pk}").json()

    assert [n["title"] for n in everything] == ["Alert 3", "Alert 2", "Alert 1", "Alert 0"]
    assert everything[-1]["read"] is True and everything[0]["read"] is False
    assert [n["title"] for n in unread] == ["Alert 3", "Alert 2", "Alert 1"]
    assert [n["title"] for n in page] == ["Alert 2", "Alert 1"]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "before=-1", "unread=perhaps", "limit=201"])
def test_history_bad_query(owner_client, history, query):
    answer = owner_client.get(f"/api/v1/notifications?{query}")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"


def test_history_needs_the_owner(client, history, django_user_model):
    assert client.get("/api/v1/notifications").status_code == 403
    client.force_login(django_user_model.objects.create_user(username="someone", password="pw"))
    assert client.get("/api/v1/notifications").status_code == 403


def test_mark_read_by_ids_and_all(owner_client, history):
    answer = post_json(owner_client, "/api/v1/notifications/read", {"ids": [history[0].pk, history[1].pk]})
    assert answer.json() == {"marked": 2}
    assert set(Notification.objects.filter(read_at__isnull=False).values_list("pk", flat=True)) == {
        history[0].pk,
        history[1].pk,
    }
    assert post_json(owner_client, "/api/v1/notifications/read", {"all": True}).json() == {"marked": 2}
    assert not Notification.objects.filter(read_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"ids": []}, 400), ({"ids": ["x"]}, 400), ({"ids": [999999]}, 404), ("{not json", 400), ([1], 400)],
)
def test_mark_read_bad_input_writes_nothing(owner_client, history, body, status):
    answer = post_json(owner_client, "/api/v1/notifications/read", body)
    assert answer.status_code == status and set(answer.json()) == {"error", "detail"}
    assert not Notification.objects.filter(read_at__isnull=False).exists()


def test_mark_read_with_one_unknown_id_marks_none(owner_client, history):
    answer = post_json(owner_client, "/api/v1/notifications/read", {"ids": [history[0].pk, 999999]})
    assert answer.status_code == 404 and not Notification.objects.filter(read_at__isnull=False).exists()


def test_device_subscribe_resubscribe_and_unsubscribe(owner_client, owner):
    body = {"device_id": "web-abc", "platform": "web", "name": "Laptop"}
    assert post_json(owner_client, "/api/v1/notifications/devices", body).status_code == 201
    assert post_json(owner_client, "/api/v1/notifications/devices", {**body, "name": "Work laptop"}).status_code == 200
    device = Device.objects.get()
    assert (device.user, device.name) == (owner, "Work laptop")

    assert delete_json(owner_client, "/api/v1/notifications/devices", {"device_id": "web-abc"}).status_code == 204
    assert not Device.objects.exists()
    answer = delete_json(owner_client, "/api/v1/notifications/devices", {"device_id": "web-abc"})
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [{}, {"device_id": "x", "platform": "blackberry"}, {"device_id": "", "platform": "web"},
     {"device_id": "x" * 201, "platform": "web"}, {"platform": "web"}],
)  # fmt: skip
def test_device_bad_input(owner_client, body):
    answer = post_json(owner_client, "/api/v1/notifications/devices", body)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    assert not Device.objects.exists()


def test_beams_token_for_the_signed_in_owner(owner_client, owner, channels):
    answer = owner_client.get(f"/api/v1/notifications/beams-token?user_id={beams_user_id(owner.pk)}")
    claims = jwt.decode(answer.json()["token"], channels.KAIZEN_BEAMS_SECRET_KEY, algorithms=["HS256"])
    assert claims["sub"] == beams_user_id(owner.pk)
    assert claims["iss"] == f"https://{channels.KAIZEN_BEAMS_INSTANCE_ID}.pushnotifications.pusher.com"


def test_beams_token_refuses_another_user_and_says_when_push_is_off(owner_client, owner, channels, settings):
    answer = owner_client.get("/api/v1/notifications/beams-token?user_id=kaizen-user-999")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    settings.KAIZEN_BEAMS_SECRET_KEY = ""
    answer = owner_client.get("/api/v1/notifications/beams-token")
    assert answer.status_code == 503 and answer.json()["error"] == "not_configured"


def post_metrics(client, key, body):
    return post_json(client, "/api/v1/metrics", body, HTTP_X_KAIZEN_KEY=key.public_key)


def test_metrics_are_stored_and_a_revenue_milestone_alerts_once(client, project_key, settings, channels):
    settings.KAIZEN_REVENUE_MILESTONES = [Decimal(100), Decimal(1000)]
    body = {"metrics": [{"name": "revenue", "kind": "counter", "value": "60.5"},
                        {"name": "active_users", "kind": "gauge", "value": 12}]}  # fmt: skip
    assert post_metrics(client, project_key, body).json() == {"recorded": 2, "milestones": []}

    second = post_metrics(client, project_key, {"metrics": [{"name": "revenue", "kind": "counter", "value": 50}]})
    third = post_metrics(client, project_key, {"metrics": [{"name": "revenue", "kind": "counter", "value": 1}]})

    assert second.status_code == 201 and second.json()["milestones"] == ["100"]
    assert third.json()["milestones"] == []
    assert ProductMetric.objects.filter(project=project_key.project).count() == 4
    assert MilestoneReached.objects.get().threshold == 100
    alert = Notification.objects.get(kind="revenue_milestone")
    assert (alert.severity, alert.title, alert.body) == ("P1", "Revenue passed 100", "Revenue is now 110.50.")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"metrics": []},
        {"metrics": [{"name": "Revenue!", "kind": "counter", "value": 1}]},
        {"metrics": [{"name": "revenue", "kind": "histogram", "value": 1}]},
        {"metrics": [{"name": "revenue", "kind": "counter", "value": "lots"}]},
        {"metrics": [{"name": "revenue", "kind": "counter", "value": -5}]},
        {"metrics": [{"name": "ok", "kind": "gauge", "value": 1}, {"name": "bad", "kind": "gauge"}]},
        {"metrics": [{"name": "a", "kind": "gauge", "value": 1, "timestamp": "yesterday"}]},
        "[not json",
    ],
)
def test_metrics_bad_input_is_a_400_and_writes_nothing(client, project_key, body):
    answer = post_metrics(client, project_key, body)
    assert answer.status_code == 400 and set(answer.json()) == {"error", "detail"}
    assert not ProductMetric.objects.exists()


def test_a_metric_cannot_change_kind(client, project_key):
    post_metrics(client, project_key, {"metrics": [{"name": "builds", "kind": "counter", "value": 3}]})
    answer = post_metrics(client, project_key, {"metrics": [{"name": "builds", "kind": "gauge", "value": 1}]})
    assert answer.status_code == 400 and answer.json()["error"] == "metric_kind_conflict"
    assert ProductMetric.objects.count() == 1


def test_metrics_need_a_valid_project_key(client, project_key):
    body = {"metrics": [{"name": "builds", "kind": "counter", "value": 1}]}
    assert post_json(client, "/api/v1/metrics", body).status_code == 401
    assert post_json(client, "/api/v1/metrics", body, HTTP_X_KAIZEN_KEY="nope").status_code == 401
    assert not ProductMetric.objects.exists()


def test_preferences_read_and_edit_audited(owner_client, channels):
    from healing.models import AuditEntry
    from notifications.models import Preference, QuietHours

    table = owner_client.get("/api/v1/notifications/preferences").json()
    assert {"kind": "issue_detected", "channel": "sms", "enabled": True} in table["preferences"]
    assert table["configured"]["push"] is True and table["timezone"] == "UTC"

    body = {"preferences": [{"kind": "issue_resolved", "channel": "push", "enabled": False}],
            "quiet_hours": {"enabled": True, "start": "23:00", "end": "06:30"}}  # fmt: skip
    answer = owner_client.patch("/api/v1/notifications/preferences", data=json.dumps(body),
                                content_type="application/json").json()  # fmt: skip

    assert {"kind": "issue_resolved", "channel": "push", "enabled": False} in answer["preferences"]
    assert answer["quiet_hours"] == {"enabled": True, "start": "23:00:00", "end": "06:30:00", "p0_breaks_through": True}
    assert Preference.objects.get().enabled is False
    assert QuietHours.objects.get().start.isoformat() == "23:00:00"
    entry = AuditEntry.objects.get(action="notifications.preferences")
    assert entry.actor == "owner" and entry.detail["quiet_hours"] == {
        "enabled": "True",
        "start": "23:00:00",
        "end": "06:30:00",
    }
    owner_client.patch("/api/v1/notifications/preferences", data=json.dumps(body), content_type="application/json")
    assert AuditEntry.objects.filter(action="notifications.preferences").count() == 1  # nothing changed: no record


@pytest.mark.parametrize(
    "body",
    [{}, {"preferences": [{"kind": "summary", "channel": "push", "enabled": False}]},
     {"preferences": [{"kind": "issue_detected", "channel": "pager", "enabled": False}]},
     {"preferences": [{"kind": "issue_detected", "channel": "sms"}]},
     {"quiet_hours": {"start": "25:00"}},
     {"preferences": [{"kind": "issue_detected", "channel": "sms", "enabled": False}], "quiet_hours": {"end": "x"}}],
)  # fmt: skip
def test_preferences_bad_input_changes_nothing(owner_client, body):
    from notifications.models import Preference, QuietHours

    answer = owner_client.patch(
        "/api/v1/notifications/preferences", data=json.dumps(body), content_type="application/json"
    )
    assert answer.status_code == 400 and set(answer.json()) == {"error", "detail"}
    assert not Preference.objects.exists() and not QuietHours.objects.exists()
