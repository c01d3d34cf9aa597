"""Sandbox probes are bound to one project, method and path, work once and expire in a minute;
the secret they are signed with is random per install, never derived from the public dev key."""

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings as django_settings

from flags import probes
from flags.probes import probe_sign, sandbox_user_sign
from kaizen_site import sandbox_secret
from tests.factories import ProjectKeyFactory

SANDBOX_KEY = "sandbox-signing-key"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(settings):
    settings.KAIZEN_SANDBOX_MODE = True
    settings.KAIZEN_SANDBOX_SECRET = SANDBOX_KEY
    return settings


@pytest.fixture
def off_flag(make_flag):
    return make_flag(key="off", enabled=False, rollout_percentage=100)


def flags_for(client, key, *, user="42", probe=None):
    headers = {"HTTP_X_KAIZEN_KEY": key} | ({"HTTP_X_KAIZEN_PROBE": probe} if probe else {})
    return client.get(f"/api/v1/flags?user={user}", **headers)


def evaluate(client, key, *, probe):
    body = orjson.dumps({"items": [{"flag": "off", "user": "42"}]})
    return client.post("/api/v1/flags/evaluate", data=body, content_type="application/json",
                       HTTP_X_KAIZEN_KEY=key, HTTP_X_KAIZEN_PROBE=probe)  # fmt: skip


def read_probe(project, **overrides):
    """A probe for GET /api/v1/flags under `project`."""
    return probe_sign(**{"project_id": project.id, "method": "GET", "path": "/api/v1/flags", "flag_key": "off",
                         "user_id": "42", **overrides})  # fmt: skip


def refused(response) -> bool:
    return response.status_code == 403 and response.json()["error"] == "probe_refused"


def test_a_probe_forces_its_flag_once_for_its_user(client, project_key, off_flag, sandbox):
    probe = read_probe(project_key.project)
    forced = flags_for(client, project_key.public_key, probe=probe)
    assert forced.status_code == 200 and forced.json()["flags"]["off"] is True
    assert "ETag" not in forced  # a probe's answer is for that request alone
    assert refused(flags_for(client, project_key.public_key, probe=probe))  # the same header again
    other_user = flags_for(client, project_key.public_key, user="43", probe=read_probe(project_key.project))
    assert other_user.json()["flags"]["off"] is False  # it names one user


def test_the_nonce_is_remembered_in_redis_until_the_probe_would_have_expired(client, project_key, off_flag, sandbox):
    assert flags_for(client, project_key.public_key, probe=read_probe(project_key.project)).status_code == 200
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    remembered = [k for k in store.keys("*kaizen:sandbox-nonce:x-kaizen-probe:*")]
    assert len(remembered) == 1
    assert 0 < store.ttl(remembered[0]) <= 2 * probes.MAX_AGE_SECONDS + 1


def test_a_captured_probe_is_refused_on_another_endpoint(client, project_key, off_flag, sandbox):
    assert refused(evaluate(client, project_key.public_key, probe=read_probe(project_key.project)))
    made_for_evaluate = read_probe(project_key.project, method="POST", path="/api/v1/flags/evaluate")
    answer = evaluate(client, project_key.public_key, probe=made_for_evaluate)
    assert answer.status_code == 200 and answer.json()["results"][0]["reason"] == "probe"


def test_a_captured_probe_is_refused_under_another_projects_key(client, project_key, off_flag, sandbox):
    other = ProjectKeyFactory()
    probe = read_probe(project_key.project)
    assert refused(flags_for(client, other.public_key, probe=probe))
    # Refused there before it was used: it still works, once, where it belongs.
    assert flags_for(client, project_key.public_key, probe=probe).json()["flags"]["off"] is True


@pytest.mark.parametrize(
    "forge",
    [
        lambda p: read_probe(p, key="guessed"),
        lambda p: read_probe(p, key=hashlib.sha256(b"dev-only-insecure-key:sandbox").hexdigest()),  # the old derivation
        lambda p: read_probe(p, issued_at=int(time.time()) - probes.MAX_AGE_SECONDS - 2),
        lambda p: read_probe(p, issued_at=int(time.time()) + probes.MAX_AGE_SECONDS + 2),
        lambda p: read_probe(p, user_id="43").split(".")[0] + "." + read_probe(p).split(".")[1],  # claims swapped
        lambda p: "garbage",
        lambda p: "e30." + "0" * 64,
        lambda p: read_probe(p)[:-1] + "é",
        lambda p: "x" * (probes.MAX_HEADER_LENGTH + 1),
    ],
    ids=["forged", "dev-key", "expired", "future", "swapped", "garbage", "no-claims", "non-ascii", "too-long"],
)
def test_a_bad_probe_is_refused_and_uses_up_nothing(client, project_key, off_flag, sandbox, forge):
    assert refused(flags_for(client, project_key.public_key, probe=forge(project_key.project)))
    assert redis.Redis.from_url(django_settings.REDIS_URL).keys("*kaizen:sandbox-nonce*") == []


def test_a_probe_is_ignored_outside_the_sandbox_and_refused_without_a_secret(client, project_key, off_flag, settings):
    settings.KAIZEN_SANDBOX_MODE, settings.KAIZEN_SANDBOX_SECRET = False, SANDBOX_KEY
    assert (
        flags_for(client, project_key.public_key, probe=read_probe(project_key.project)).json()["flags"]["off"] is False
    )
    settings.KAIZEN_SANDBOX_MODE, settings.KAIZEN_SANDBOX_SECRET = True, ""
    assert refused(flags_for(client, project_key.public_key, probe=read_probe(project_key.project, key="")))


def test_the_sandbox_user_is_bound_the_same_way(rf, sandbox, db):
    def signed(**overrides):
        bound = {"project_id": 7, "method": "GET", "path": "/demo/api/me", "user_id": "user:7"} | overrides
        return rf.get("/demo/api/me", HTTP_X_KAIZEN_SANDBOX_USER=sandbox_user_sign(**bound))

    request = signed()
    assert probes.sandbox_user(request, project_id=7) == "user:7"
    assert probes.sandbox_user(request, project_id=7) == "user:7"  # asked twice in one request: one use
    with pytest.raises(probes.ProbeRefused, match="already used"):
        probes.sandbox_user(rf.get("/demo/api/me", HTTP_X_KAIZEN_SANDBOX_USER=request.headers[probes.SANDBOX_USER]),
                            project_id=7)  # fmt: skip
    with pytest.raises(probes.ProbeRefused):
        probes.sandbox_user(signed(), project_id=8)
    with pytest.raises(probes.ProbeRefused):
        probes.sandbox_user(signed(path="/demo/api/credits"), project_id=7)
    with pytest.raises(probes.ProbeRefused):
        probes.sandbox_user(signed(method="POST"), project_id=7)
    # A probe is not an identity, nor the other way round: the header's name is signed too.
    as_probe = rf.get("/demo/api/me", HTTP_X_KAIZEN_PROBE=signed().headers[probes.SANDBOX_USER])
    with pytest.raises(probes.ProbeRefused):
        probes.probe_forced_flags(as_probe, project_id=7)
    assert probes.sandbox_user(rf.get("/demo/api/me"), project_id=7) is None


# --- the secret -------------------------------------------------------------------------------


def test_the_install_secret_is_random_private_and_reused(tmp_path):
    first = sandbox_secret.sandbox_secret(configured="", var_dir=tmp_path)
    path = tmp_path / sandbox_secret.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 2 * sandbox_secret.SECRET_BYTES
    assert sandbox_secret.sandbox_secret(configured="", var_dir=tmp_path) == first
    assert sandbox_secret.sandbox_secret(configured="from-env", var_dir=tmp_path) == "from-env"
    other_install = tmp_path / "other"
    other_install.mkdir()
    assert sandbox_secret.sandbox_secret(configured="", var_dir=other_install) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", sandbox_secret.FILE_NAME]  # no temporary left


def test_a_truncated_secret_file_is_refused(tmp_path):
    (tmp_path / sandbox_secret.FILE_NAME).write_text("short\n")
    with pytest.raises(RuntimeError, match="no usable sandbox secret"):
        sandbox_secret.sandbox_secret(configured="", var_dir=tmp_path)


def _settings_secret(var_dir: Path, **env) -> subprocess.Popen:
    """A process that loads the settings as `make run` does (DEBUG on, no SECRET_KEY) and prints the secret."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "KAIZEN_SANDBOX_SECRET")}
    environ |= {"DEBUG": "1", "KAIZEN_SANDBOX_MODE": "1", "KAIZEN_VAR_DIR": str(var_dir),
                "DJANGO_SETTINGS_MODULE": "kaizen_site.settings", **env}  # fmt: skip
    code = "import django; django.setup(); from django.conf import settings; print(settings.KAIZEN_SANDBOX_SECRET)"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=environ, stdout=subprocess.PIPE, text=True)


def test_make_run_without_secret_key_shares_one_random_secret_across_its_processes(tmp_path):
    started = [_settings_secret(tmp_path) for _ in range(4)]  # honcho starts them together
    secrets = {proc.communicate(timeout=60)[0].strip() for proc in started}
    assert len(secrets) == 1
    (secret,) = secrets
    assert secret == (tmp_path / sandbox_secret.FILE_NAME).read_text().strip()
    assert secret != hashlib.sha256(b"dev-only-insecure-key:sandbox").hexdigest()  # what was forgeable
    configured = _settings_secret(tmp_path, KAIZEN_SANDBOX_SECRET="set-by-the-operator")
    assert configured.communicate(timeout=60)[0].strip() == "set-by-the-operator"
