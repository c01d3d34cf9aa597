"""The flags API: reads with the public key, ETag/304, batches, owner-only changes (probes: test_probe_binding)."""

import orjson
import pytest

from flags.models import Flag, FlagChange
from healing.models import AuditEntry
from tests.owner import OWNER_EMAIL, owner_listed, owner_verify

OWNER = "secret"  # what tests.factories.ProjectKeyFactory stores the hash of


@pytest.fixture
def api(client, project_key):
    """Calls the API as the project's browser (public key only) unless told otherwise."""

    def call(method, path, body=None, *, bearer=None, key=None, **headers):
        extra = {"HTTP_X_KAIZEN_KEY": key or project_key.public_key, **headers}
        if bearer is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {bearer}"
        if body is not None:
            return getattr(client, method)(path, data=orjson.dumps(body), content_type="application/json", **extra)
        return getattr(client, method)(path, **extra)

    return call


@pytest.fixture
def flags(make_flag):
    return {
        "on": make_flag(key="on", enabled=True, rollout_percentage=100),
        "off": make_flag(key="off", enabled=False, rollout_percentage=100),
        "half": make_flag(key="half", enabled=True, rollout_percentage=50),
    }


def _error(response) -> str:
    body = response.json()
    assert set(body) == {"error", "detail"}
    return body["error"]


# --- GET /api/v1/flags ------------------------------------------------------------------------


def test_all_flags_for_a_user(api, flags):
    response = api("get", "/api/v1/flags?user=42")
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "42" and body["version"] == 3
    assert body["flags"]["on"] is True and body["flags"]["off"] is False and set(body["flags"]) == {"on", "off", "half"}


def test_the_public_key_may_come_in_the_query(client, project_key, flags):
    response = client.get(f"/api/v1/flags?user=42&key={project_key.public_key}")
    assert response.status_code == 200


def test_etag_and_304(api, flags):
    first = api("get", "/api/v1/flags?user=42")
    etag = first["ETag"]
    assert etag.startswith('"3-') and first["Cache-Control"] == "private, no-cache"
    again = api("get", "/api/v1/flags?user=42", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert api("get", "/api/v1/flags?user=42", HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    other_user = api("get", "/api/v1/flags?user=43", HTTP_IF_NONE_MATCH=etag)
    assert other_user.status_code == 200 and other_user["ETag"] != etag


def test_a_change_invalidates_the_etag(api, flags, project):
    from flags import services

    etag = api("get", "/api/v1/flags?user=42")["ETag"]
    services.flag_kill(flag=flags["on"], actor="alice", why="errors")
    response = api("get", "/api/v1/flags?user=42", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and response.json()["flags"]["on"] is False
    assert response["ETag"] != etag


def test_an_expiring_override_changes_the_etag(api, flags, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from flags import evaluate, services

    expires = timezone.now() + timedelta(minutes=5)
    services.override_set(flag=flags["off"], user_id="42", enabled=True, actor="kaizen", expires_at=expires)
    before = api("get", "/api/v1/flags?user=42")
    assert before.json()["flags"]["off"] is True
    monkeypatch.setattr(evaluate, "_wallclock", lambda: expires.timestamp() + 1)
    after = api("get", "/api/v1/flags?user=42", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200 and after.json()["flags"]["off"] is False


@pytest.mark.parametrize("query", ["", "?user=", "?user=" + "x" * 201, "?user=a%00b"])
def test_a_missing_oversized_or_nul_user_is_400(api, flags, query):
    response = api("get", f"/api/v1/flags{query}")
    assert response.status_code == 400 and _error(response) == "invalid"


def test_a_user_id_is_taken_as_sent(api, flags):
    # A tab goes through the full validation, the others through the fast path: either way the
    # id comes back exactly as sent (no trimming, the longest allowed length kept whole).
    for user in ("a\tb", "42 ", "é" * 200):
        response = api("get", "/api/v1/flags", data={"user": user})
        assert response.status_code == 200 and response.json()["user"] == user


def test_an_unknown_key_is_401(api, flags):
    response = api("get", "/api/v1/flags?user=1", key="0" * 32)
    assert response.status_code == 401 and _error(response) == "unknown_key"


# --- POST /api/v1/flags/evaluate --------------------------------------------------------------


def test_batch_evaluate(api, flags):
    items = [{"flag": "on", "user": "1"}, {"flag": "off", "user": "1"}, {"flag": "half", "user": "1"}]
    response = api("post", "/api/v1/flags/evaluate", {"items": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["flag"], r["user"], r["enabled"], r["reason"]) for r in results[:2]] == [
        ("on", "1", True, "rollout"),
        ("off", "1", False, "disabled"),
    ]


def test_batch_of_1000_is_accepted_and_1001_refused(api, flags):
    items = [{"flag": "half", "user": str(n)} for n in range(1000)]
    response = api("post", "/api/v1/flags/evaluate", {"items": items})
    assert response.status_code == 200 and len(response.json()["results"]) == 1000
    assert 400 < sum(r["enabled"] for r in response.json()["results"]) < 600
    too_many = api("post", "/api/v1/flags/evaluate", {"items": [*items, {"flag": "on", "user": "x"}]})
    assert too_many.status_code == 400 and _error(too_many) == "invalid"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": "on"},
        {"items": [{"flag": "on"}]},
        {"items": [{"flag": "on", "user": 5, "extra": {}}, {"flag": "", "user": "1"}]},
        [{"flag": "on", "user": "1"}],
    ],
)
def test_bad_batches_are_400(api, flags, body):
    response = api("post", "/api/v1/flags/evaluate", body)
    assert response.status_code == 400 and _error(response) == "invalid"


def test_invalid_json_is_400(api, flags, client, project_key):
    response = client.post(
        "/api/v1/flags/evaluate", data=b"{", content_type="application/json", HTTP_X_KAIZEN_KEY=project_key.public_key
    )
    assert response.status_code == 400 and _error(response) == "invalid_json"


def test_an_unknown_flag_in_a_batch_is_404(api, flags):
    items = [{"flag": "on", "user": "1"}, {"flag": "nope", "user": "1"}]
    response = api("post", "/api/v1/flags/evaluate", {"items": items})
    assert response.status_code == 404 and _error(response) == "unknown_flag"
    assert "nope" in response.json()["detail"]


# --- owner-only changes -----------------------------------------------------------------------


def test_the_owner_kills_a_flag(api, flags, project):
    response = api("post", "/api/v1/flags/on/kill", {"why": "checkout 500s"}, bearer=OWNER)
    assert response.status_code == 200, response.content
    assert response.json()["killed"] is True
    change = FlagChange.objects.get(flag=flags["on"], action="kill")
    assert change.why == "checkout 500s" and change.actor.startswith("owner:")
    assert AuditEntry.objects.filter(action="flag.kill", target=f"flag:{project.slug}/on").exists()
    assert api("get", "/api/v1/flags?user=1").json()["flags"]["on"] is False


def test_a_kill_without_a_body_is_fine(client, project_key, flags):
    response = client.generic(  # as `curl -X POST` sends it: no body, no content type
        "POST", "/api/v1/flags/on/kill", b"",
        HTTP_X_KAIZEN_KEY=project_key.public_key, HTTP_AUTHORIZATION=f"Bearer {OWNER}",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert Flag.objects.get(key="on").killed
    assert FlagChange.objects.get(action="kill").why == "Kill switch pulled over the API."


@pytest.mark.parametrize("bearer", [None, "", "wrong", "Secret", "secret2"])
def test_a_non_owner_cannot_kill(api, flags, bearer):
    response = api("post", "/api/v1/flags/on/kill", {"why": "x"}, bearer=bearer)
    assert response.status_code == 403 and _error(response) == "permission_denied"
    assert not Flag.objects.get(key="on").killed and not FlagChange.objects.filter(action="kill").exists()


def test_another_projects_secret_cannot_kill(api, flags):
    from healing.models import hash_secret
    from tests.factories import ProjectKeyFactory

    ProjectKeyFactory(secret_hash=hash_secret("their-secret"))
    assert api("post", "/api/v1/flags/on/kill", bearer="their-secret").status_code == 403
    assert not Flag.objects.get(key="on").killed and not FlagChange.objects.filter(action="kill").exists()


def test_a_revoked_key_cannot_kill(api, flags, project_key):
    project_key.is_active = False
    project_key.save()
    assert api("post", "/api/v1/flags/on/kill", bearer=OWNER).status_code == 403
    assert not Flag.objects.get(key="on").killed and not FlagChange.objects.filter(action="kill").exists()


def test_a_staff_session_may_kill(api, flags, client, django_user_model, settings):
    from django.contrib.auth.models import Permission

    ops = django_user_model.objects.create_user("ops", email=OWNER_EMAIL, is_staff=True)
    ops.user_permissions.add(Permission.objects.get(content_type__app_label="flags", codename="change_flag"))
    owner_verify(client, owner_listed(settings) and ops)
    response = api("post", "/api/v1/flags/on/kill", {"why": "from the console"})
    assert response.status_code == 200
    assert FlagChange.objects.get(action="kill").actor == "ops"


def test_a_staff_session_needs_the_csrf_token(flags, project_key, django_user_model, settings):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    owner_listed(settings)
    owner_verify(browser, django_user_model.objects.create_user("ops", email=OWNER_EMAIL, is_staff=True))
    response = browser.post(
        "/api/v1/flags/on/kill", data=b"{}", content_type="application/json", HTTP_X_KAIZEN_KEY=project_key.public_key
    )
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Flag.objects.get(key="on").killed


def test_a_non_staff_session_may_not_kill(api, flags, client, django_user_model):
    client.force_login(django_user_model.objects.create_user("someone"))
    assert api("post", "/api/v1/flags/on/kill", {"why": "x"}).status_code == 403
    assert not Flag.objects.get(key="on").killed and not FlagChange.objects.filter(action="kill").exists()


def test_killing_an_unknown_flag_is_404(api, flags):
    response = api("post", "/api/v1/flags/nope/kill", {"why": "x"}, bearer=OWNER)
    assert response.status_code == 404 and _error(response) == "unknown_flag"
    assert not Flag.objects.filter(killed=True).exists() and not FlagChange.objects.filter(action="kill").exists()


def test_the_owner_changes_the_rollout(api, flags):
    response = api("patch", "/api/v1/flags/half", {"rollout_percentage": 75, "why": "phase 2"}, bearer=OWNER)
    assert response.status_code == 200 and response.json()["rollout_percentage"] == 75
    change = FlagChange.objects.filter(flag=flags["half"]).first()
    assert (change.action, change.before, change.after, change.why) == (
        "update", {"rollout_percentage": 50}, {"rollout_percentage": 75}, "phase 2",
    )  # fmt: skip


@pytest.mark.parametrize("percentage", [-1, 101, 1000, "fifty", None])
def test_a_percentage_outside_0_100_is_400(api, flags, percentage):
    response = api("patch", "/api/v1/flags/half", {"rollout_percentage": percentage}, bearer=OWNER)
    assert response.status_code == 400 and _error(response) == "invalid"
    assert "rollout_percentage" in response.json()["detail"]
    assert Flag.objects.get(key="half").rollout_percentage == 50


def test_an_empty_change_is_400(api, flags):
    assert api("patch", "/api/v1/flags/half", {"why": "nothing"}, bearer=OWNER).status_code == 400
    assert not FlagChange.objects.filter(action="update").exists()


def test_the_public_key_alone_cannot_change_a_flag(api, flags):
    assert api("patch", "/api/v1/flags/half", {"rollout_percentage": 100}).status_code == 403
    assert Flag.objects.get(key="half").rollout_percentage == 50
    assert not FlagChange.objects.filter(action="update").exists()


def test_changing_an_unknown_flag_is_404(api, flags):
    assert api("patch", "/api/v1/flags/nope", {"enabled": True}, bearer=OWNER).status_code == 404
    assert set(Flag.objects.values_list("key", flat=True)) == {"on", "off", "half"}
    assert not FlagChange.objects.filter(action="update").exists()
