"""`make run` as a newcomer meets it: the address it prints is the address that answers.

The real Makefile target starts the real Procfile under honcho (web, consumer, both worker groups,
beat) on the test database. Its address is moved with KAIZEN_PUBLIC_URL alone, and a PORT in
the environment (honcho's own default) must not move it: the page at the printed address, the
demo page's own report, and the API docs must all work there.
"""

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from healing.models import Occurrence
from kaizen_site.celery import worker_group
from tests.processes import database_url, free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(settings.BASE_DIR)
START_SECONDS = 180  # two shared cores: migrations, collectstatic and five processes


def _get(url: str, *, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - our own 127.0.0.1 server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post_as_the_demo_page(base: str, key: str, body: dict) -> tuple[int, dict]:
    """What the page's detector sends: text/plain, the key in the query, from its own origin."""
    request = urllib.request.Request(  # noqa: S310
        f"{base}/api/v1/issues?key={key}",
        data=orjson.dumps(body),
        method="POST",
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": base},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.fixture
def make_run(tmp_path):
    """Starts `make run` in its own session at a free port; stops the whole process group."""
    base = f"http://127.0.0.1:{free_port()}"
    stream = f"http://127.0.0.1:{free_port()}"  # by default the next port: not sure to be free here
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="kaizen_site.settings",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        KAIZEN_PUBLIC_URL=base,
        KAIZEN_STREAM_URL=stream,
        KAIZEN_VAR_DIR=str(tmp_path / "var"),
        PORT="5000",  # what honcho would hand the web server if left alone
        WEB_CONCURRENCY="1",
        MAKE_RUN_TEST_MARK=mark,  # every process it starts inherits it: found and stopped at the end
    )
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            # The install step is CI's and the README's first command; this test is about running.
            ["make", "-o", ".venv/.installed", f"PROM_DIR={tmp_path / 'prometheus'}", "run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield base, process, log_path, stream, mark
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever outlived the graceful stop
        except ProcessLookupError:
            pass
        # honcho's children may sit in process groups of their own: a worker left running would
        # take the next tests' tasks from the shared Redis. Stop every process carrying the mark.
        _kill_marked(mark)


def _marked(mark: str) -> dict[int, list[str]]:
    """The processes `make run` started (they carry the mark): pid → command line."""
    needle = f"MAKE_RUN_TEST_MARK={mark}".encode()
    marked = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                marked[int(proc.name)] = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return marked


def _worker_session_leaders(mark: str) -> dict[str, set[str]]:
    """Worker group → what leads the sessions of its processes ("python" for the worker itself,
    the shell's name when honcho's shell kept its place), once all three groups are up, the
    `critical` group in two processes."""
    deadline = time.monotonic() + 60
    while True:
        leaders: dict[str, set[str]] = {}
        for pid, argv in _marked(mark).items():
            if "worker" in argv and "--hostname" in argv:
                group = worker_group(argv[argv.index("--hostname") + 1])
                try:
                    leader = Path(os.readlink(f"/proc/{os.getsid(pid)}/exe")).name
                except OSError:  # gone meanwhile
                    continue
                leaders.setdefault(group, set()).add("python" if leader.startswith("python") else leader)
        if (len(leaders) == 3 and len(_critical_names(mark)) == 2) or time.monotonic() > deadline:
            return leaders
        time.sleep(0.5)


def _critical_names(mark: str) -> set[str]:
    """The node names of the P0 workers `make run` started (its threads pool has no child processes)."""
    return {argv[argv.index("--hostname") + 1] for argv in _marked(mark).values() if "P0" in argv}


def _kill_marked(mark: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        marked = _marked(mark)
        if not marked:
            return
        for pid in marked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _wait_for_health(base: str, process: subprocess.Popen, log_path: Path) -> dict:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            status, body = _get(f"{base}/healthz", timeout=2)
            if status == 200:
                return orjson.loads(body)
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"nothing answered at {base}/healthz:\n{log_path.read_text()[-4000:]}")


def test_make_run_serves_the_address_it_prints(make_run):
    base, process, log_path, stream, mark = make_run
    health = _wait_for_health(base, process, log_path)
    assert health["status"] == "ok"

    # Each worker group leads the session honcho starts it in (the Procfile's `exec`), so the CPU
    # weight it sets at start is its session's: the P0 worker's claim, the routine worker's yield.
    assert _worker_session_leaders(mark) == {"critical": {"python"}, "urgent": {"python"}, "routine": {"python"}}
    # Two `critical` processes, each under a name of its own (a revoke reaches both).
    critical = _critical_names(mark)
    assert len(critical) == 2 and all(re.fullmatch(r"critical\.\d+@%h", name) for name in critical), critical

    printed = log_path.read_text()
    assert f"console    : {base}/admin/" in printed and f"demo       : {base}/demo/" in printed
    key = re.search(r"ingest key : ([0-9a-f]+)", printed).group(1)
    assert re.search(rf"Sentry DSN : http://{key}@127\.0\.0\.1:{base.rsplit(':', 1)[1]}/\d+", printed)
    assert re.search(rf"Listening at: {re.escape(base)}\b", printed)

    status, page = _get(f"{base}/demo/")
    assert status == 200
    assert re.search(r'data-key="([0-9a-f]+)"', page.decode()).group(1) == key  # the detector's tag
    assert _get(f"{base}/static/kaizen/detector.js")[0] == 200

    status, answer = _post_as_the_demo_page(
        base, key, {"type": "SILENT_FAILURE", "message": "Clicked Generate and nothing happened", "route": "/demo/"}
    )
    assert status == 202, answer
    event_id = uuid.UUID(answer["event_id"])
    deadline = time.monotonic() + 60
    while not Occurrence.objects.filter(event_id=event_id).exists():  # the consumer stores it
        assert time.monotonic() < deadline, log_path.read_text()[-4000:]
        time.sleep(0.5)

    for path in ("/admin/login/", "/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"):
        assert _get(f"{base}{path}")[0] == 200, path

    # The users' event streams: the ASGI server at the printed stream address, refusing a bad token.
    assert f"streams    : {stream}/api/v1/sessions/<id>/events" in printed
    deadline = time.monotonic() + 60
    while True:
        try:
            status, body = _get(f"{stream}/api/v1/sessions/x/events?token=bad")
            break
        except OSError:
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.5)
    assert (status, orjson.loads(body)["error"]) == (401, "invalid_token")

    # The printed account is the owner's: its password leads straight to the authenticator set-up.
    password = re.search(r"user admin, password (\S+)", printed).group(1)
    assert _sign_in(base, "admin", password).endswith("/admin/two-factor/setup/?next=/admin/")


def _sign_in(base: str, username: str, password: str) -> str:
    """Posts the console's login form as a browser would; returns the address it lands on."""
    import requests

    browser = requests.Session()
    page = browser.get(f"{base}/admin/login/?next=/admin/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    answer = browser.post(f"{base}/admin/login/?next=/admin/", timeout=10, headers={"Referer": f"{base}/admin/login/"},
                          data={"csrfmiddlewaretoken": token, "username": username, "password": password,
                                "next": "/admin/"})  # fmt: skip
    return answer.url
