"""What a user of the demo sees, in headless Chromium against the live service (web, stream,
consumer and both worker groups, as the Procfile starts them): for each of the three demo bugs
the detector's popup appears within 3 s of the failure, walks through the healing stages in
order to "Fixed", and its "Try again" then works. Screenshots of the popup and of the fixed state
are kept as test artifacts; the failure → popup time is printed (target 1 s; the spec allows 3 s).

Each scenario is its own user in their own browser session, as three users meeting three bugs."""

import time

import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OVERLAY = "#kaizen-overlay"
FINAL = {"deployed", "mitigated", "resolved"}
HEAL_SECONDS = 120
POPUP_BOUND_MS = 3000  # the spec's bound; the target is 1 s

# In the page: every status the popup shows (kaizen:status), with when it was shown.
LISTEN = """() => { window.kzStatuses = [];
  window.addEventListener("kaizen:status", (e) => window.kzStatuses.push({...e.detail, t: performance.now()})); }"""
# When the failure happened, as the browser saw it: the failing answer's arrival.
ANSWERED = """(path) => { const hits = performance.getEntriesByType("resource").filter((e) => e.name.endsWith(path));
  return hits.length ? hits[hits.length - 1].responseEnd : null; }"""


def _statuses(page) -> list[dict]:
    return page.evaluate("window.kzStatuses")


def _popup_after(page, failed_at: float) -> float:
    """Milliseconds from the failure to the popup, once it shows (at most the spec's bound)."""
    page.wait_for_function("window.kzStatuses.length > 0", timeout=POPUP_BOUND_MS + 2000)
    first = _statuses(page)[0]
    assert first["stage"] == "detected"
    return first["t"] - failed_at


def _healed(page, *, service) -> list[dict]:
    """The statuses of the scenario's issue, once the popup says it is fixed."""
    deadline = time.monotonic() + HEAL_SECONDS
    while time.monotonic() < deadline:
        shown = _statuses(page)
        if shown and shown[-1]["final"]:
            issue = shown[-1]["issue_id"]
            return [s for s in shown if s["issue_id"] in (None, issue)]
        for name, proc in service["running"].items():
            assert proc.poll() is None, f"{name} exited:\n" + (service["logs"] / f"{name}.log").read_text()[-3000:]
        page.wait_for_timeout(250)
    raise AssertionError(f"never fixed; the popup showed {[s['stage'] for s in _statuses(page)]}")


def _session_fix_for_everyone(base: str) -> None:
    """Once the session fix is rolled out to everyone, a new user's login works: the other two
    scenarios start from there (else their login would meet the session bug first)."""
    deadline = time.monotonic() + HEAL_SECONDS
    while time.monotonic() < deadline:
        token = requests.post(f"{base}/demo/api/login", json={"user": "zed"}, timeout=5).json()["token"]
        me = requests.get(f"{base}/demo/api/me", headers={"X-Demo-User": "zed", "Authorization": f"Bearer {token}"},
                          timeout=5)  # fmt: skip
        if me.status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError("the session fix never reached every user")


def _open(chromium, base: str):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/demo/")
    page.wait_for_function("!!window.Kaizen")
    page.evaluate(LISTEN)
    return context, page


def _log_in(page, name: str) -> None:
    page.fill("#user", name)
    page.fill("#password", "any password")
    page.click("#login")
    page.wait_for_function("document.getElementById('who').textContent !== ''")
    # The page then shows the balance: a click before that lands would see the page change.
    page.wait_for_function("document.getElementById('balance').textContent !== '\u2013'")


def _check_walkthrough(page, *, scenario: str, statuses: list[dict], artifacts) -> None:
    stages = [s["stage"] for s in statuses]
    steps = [s["step"] for s in statuses]
    print(f"{scenario}: the popup showed {' → '.join(stages)}")
    assert stages[0] == "detected" and stages[-1] in FINAL, stages
    assert steps == sorted(steps), stages  # in order, never back
    assert len(set(stages)) >= 3, stages  # it walked through the work, not straight to the end
    panel = page.locator(f"{OVERLAY} .panel")
    assert panel.get_attribute("data-stage") in FINAL
    assert panel.locator("h2").inner_text() == "Fixed"
    page.screenshot(path=str(artifacts / f"{scenario}-fixed.png"))


def test_each_demo_bug_heals_in_the_users_popup(service, chromium, artifacts):
    base = service["base"]
    timings = {}

    # 1. The session expires right after login: the detector sees the /demo/api/me 401.
    context, page = _open(chromium, base)
    _log_in(page, "alice")
    timings["session"] = _popup_after(page, page.evaluate(ANSWERED, "/demo/api/me"))
    page.screenshot(path=str(artifacts / "session-popup.png"))
    _check_walkthrough(page, scenario="session", statuses=_healed(page, service=service), artifacts=artifacts)
    page.locator(f"{OVERLAY} .panel").get_by_role("button", name="Try again").click()  # logs in again
    page.wait_for_function("document.getElementById('who').textContent === 'Logged in as alice'")
    context.close()
    _session_fix_for_everyone(base)

    # 2. Generate answers 202 and nothing ever comes: a click after which nothing happens.
    context, page = _open(chromium, base)
    _log_in(page, "bob")
    assert page.locator("#who").inner_text() == "Logged in as bob"
    page.evaluate("document.addEventListener('click', () => { window.kzClickedAt = performance.now() }, true)")
    page.click("#generate")
    page.wait_for_function("window.kzStatuses.length > 0", timeout=6000)
    # The failure is the 3 s of nothing after the click.
    timings["generate"] = _popup_after(page, page.evaluate("window.kzClickedAt") + 3000)
    page.screenshot(path=str(artifacts / "generate-popup.png"))
    _check_walkthrough(page, scenario="generate", statuses=_healed(page, service=service), artifacts=artifacts)
    assert page.locator("#result").inner_text() == ""
    page.locator(f"{OVERLAY} .panel").get_by_role("button", name="Try again").click()  # clicks Generate again
    page.wait_for_function("document.getElementById('result').textContent.startsWith('A picture of')")
    context.close()

    # 3. Credits paid for don't show: the page's own report, 3 s after the purchase.
    context, page = _open(chromium, base)
    _log_in(page, "carol")
    page.fill("#card", "4242 4242 4242 4242")
    page.click("#buy")
    page.wait_for_function("window.kzStatuses.length > 0", timeout=8000)
    timings["credits"] = _popup_after(page, page.evaluate(ANSWERED, "/demo/api/credits"))
    page.screenshot(path=str(artifacts / "credits-popup.png"))
    _check_walkthrough(page, scenario="credits", statuses=_healed(page, service=service), artifacts=artifacts)
    page.locator(f"{OVERLAY} .panel").get_by_role("button", name="Try again").click()  # checks the balance again
    page.wait_for_function("document.getElementById('balance').textContent === '100'")
    context.close()

    for scenario, ms in timings.items():
        print(f"failure → popup, {scenario}: {ms:.0f} ms (target 1000 ms, bound {POPUP_BOUND_MS} ms)")
        assert 0 <= ms <= POPUP_BOUND_MS, (scenario, ms)


@pytest.mark.rollout_phase_seconds(120)
def test_a_second_user_who_meets_the_bug_during_the_canary_is_fixed_too(service, chromium, artifacts):
    """The popup's "Fixed" must be true for whoever reads it: a user meeting the bug while the fix
    is still at its canary (one user) gets the fix at once, and their "Try again" works."""
    from flags.models import Rollout

    base = service["base"]
    context, page = _open(chromium, base)
    _log_in(page, "alice")
    _check_walkthrough(page, scenario="session", statuses=_healed(page, service=service), artifacts=artifacts)
    context.close()
    rollout = Rollout.objects.get()
    assert (rollout.phase, rollout.affected_user_id) == ("canary", "alice")

    context, page = _open(chromium, base)
    _log_in(page, "erin")  # the session bug again: the fix is on for alice only
    statuses = _healed(page, service=service)
    assert statuses[-1]["stage"] == "deployed"
    assert page.locator(f"{OVERLAY} .panel h2").inner_text() == "Fixed"
    # Clicked the moment it shows: the stream sent "Fixed" once the flag had reached every web process.
    page.locator(f"{OVERLAY} .panel").get_by_role("button", name="Try again").click()  # logs in again
    page.wait_for_function("document.getElementById('who').textContent === 'Logged in as erin'")
    page.screenshot(path=str(artifacts / "second-user-fixed.png"))
    context.close()
    rollout.refresh_from_db()
    assert rollout.phase == "canary" and list(rollout.reached_users) == ["erin"]
