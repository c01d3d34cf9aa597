"""The demo product: each bug is real, and its fix works per user (flag or owner webhook)."""

import hashlib
import hmac
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from flags.models import Flag
from flags.probes import probe_sign
from flags.services import override_set
from healing.demo import product as demo
from healing.models import Project


def api(client, method, path, *, user=None, body=None, **headers):
    if user:
        headers["HTTP_X_DEMO_USER"] = user
    call = getattr(client, method.lower())
    if body is not None:
        return call(path, data=orjson.dumps(body), content_type="application/json", **headers)
    return call(path, **headers)


def fix_for(user, flag_key):
    flag = Flag.objects.get(key=flag_key)
    override_set(flag=flag, user_id=user, enabled=True, actor="test", why="the healing loop's fix")


def test_the_demo_is_off_unless_enabled(client, db):
    assert client.get("/demo/").status_code == 404
    assert client.post("/demo/api/generate").status_code == 404


def test_the_page_carries_the_demo_project_key(client, demo_on):
    key = Project.objects.get(slug="demo").keys.get().public_key
    response = client.get("/demo/")
    assert response.status_code == 200
    assert key in response.content.decode()


def test_generate_silently_drops_the_job_until_the_retry_fix_is_on(client, demo_on):
    dropped = api(client, "POST", "/demo/api/generate", user="alice", body={"prompt": "a cat"})
    assert (dropped.status_code, dropped.json()) == (202, {"status": "queued"})
    fix_for("alice", demo.FLAG_GENERATE_RETRY)
    fixed = api(client, "POST", "/demo/api/generate", user="alice", body={"prompt": "a cat"})
    assert fixed.status_code == 200 and "a cat" in fixed.json()["result"]
    other = api(client, "POST", "/demo/api/generate", user="bob", body={"prompt": "a dog"})
    assert other.status_code == 202  # the fix is per user until it is rolled out


def test_a_new_demo_database_starts_the_accounts_afresh(client, demo_on):
    """The accounts live in the cache, Redis, which outlives the database: a demo project made
    afresh (`make clean`, a new checkout) must not find the balances of the last one."""
    api(client, "POST", "/demo/api/purchase", user="carol", body={"credits": 100})
    assert demo.account(user_id="carol") == {"credits": 0, "pending": 100}
    Project.objects.filter(slug="demo").update(created_at=timezone.now() + timedelta(seconds=1))
    assert demo.account(user_id="carol") == {"credits": 0, "pending": 0}
    assert api(client, "GET", "/demo/api/credits", user="carol").json() == {"credits": 0, "pending": 0}


def test_paid_credits_lag_until_the_owner_webhook_resyncs(client, demo_on):
    charged = api(client, "POST", "/demo/api/purchase", user="alice", body={"credits": 100})
    assert charged.json() == {"charged": 100, "credits": 0, "pending": 100}
    assert api(client, "GET", "/demo/api/credits", user="alice").json() == {"credits": 0, "pending": 100}
    body = orjson.dumps({"user_id": "alice"})
    signature = "sha256=" + hmac.new(demo.hook_secret().encode(), body, hashlib.sha256).hexdigest()
    forged = client.post(
        "/demo/hooks/resync-credits", data=body, content_type="application/json", HTTP_X_KAIZEN_SIGNATURE="sha256=00"
    )
    assert forged.status_code == 403
    assert demo.account(user_id="alice") == {"credits": 0, "pending": 100}  # a forged call changes nothing
    synced = client.post(
        "/demo/hooks/resync-credits", data=body, content_type="application/json", HTTP_X_KAIZEN_SIGNATURE=signature
    )
    assert synced.json() == {"user_id": "alice", "credits": 100, "pending": 0}
    assert api(client, "GET", "/demo/api/credits", user="alice").json() == {"credits": 100, "pending": 0}


def test_session_expires_right_after_login_until_the_fix_is_on(client, demo_on):
    token = api(client, "POST", "/demo/api/login", body={"user": "alice"}).json()["token"]
    expired = api(client, "GET", "/demo/api/me", user="alice", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (expired.status_code, expired.json()["error"]) == (401, "session_expired")
    fix_for("alice", demo.FLAG_SESSION_FIX)
    fixed = api(client, "GET", "/demo/api/me", user="alice", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (fixed.status_code, fixed.json()) == (200, {"user": "alice"})


def test_a_signed_probe_forces_the_fix_for_verification_only(client, demo_on, settings):
    def probe():
        return probe_sign(project_id=demo.demo_project_id(), method="POST", path="/demo/api/generate",
                          flag_key=demo.FLAG_GENERATE_RETRY, user_id="kaizen-probe")  # fmt: skip

    forced = api(
        client, "POST", "/demo/api/generate", user="kaizen-probe", body={"prompt": "x"}, HTTP_X_KAIZEN_PROBE=probe()
    )
    assert forced.status_code == 200
    other_user = api(
        client, "POST", "/demo/api/generate", user="mallory", body={"prompt": "x"}, HTTP_X_KAIZEN_PROBE=probe()
    )
    assert other_user.status_code == 202  # the probe names one user
    forged = api(
        client, "POST", "/demo/api/generate", user="kaizen-probe", body={}, HTTP_X_KAIZEN_PROBE=probe()[:-4] + "0000"
    )
    assert (forged.status_code, forged.json()["error"]) == (403, "probe_refused")
    settings.KAIZEN_SANDBOX_MODE = False  # production ignores probes
    ignored = api(
        client, "POST", "/demo/api/generate", user="kaizen-probe", body={"prompt": "x"}, HTTP_X_KAIZEN_PROBE=probe()
    )
    assert ignored.status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/demo/api/login", {"user": "no spaces allowed"}, "invalid_user"),
        ("/demo/api/purchase", {"credits": -5}, "invalid_credits"),
        ("/demo/api/purchase", {"credits": "100"}, "invalid_credits"),
        ("/demo/api/purchase", {"credits": True}, "invalid_credits"),
    ],
)
def test_bad_input_is_a_clear_400(client, demo_on, path, body, error):
    response = api(client, "POST", path, user="alice", body=body)
    assert (response.status_code, response.json()["error"]) == (400, error)
    assert demo.account(user_id="alice") == {"credits": 0, "pending": 0}  # nothing charged


def test_calls_without_a_user_are_401(client, demo_on):
    assert api(client, "POST", "/demo/api/generate", body={}).status_code == 401
    assert api(client, "GET", "/demo/api/me").status_code == 401
