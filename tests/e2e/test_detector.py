"""The browser detector (healing/static/kaizen/detector.js) in headless Chromium, on the demo page
served by a live server with direct ingest: what it reports and how, what it never reads, its
commands, its offline queue and its overlay. The healing loop itself is not running here (see
test_overlay_heals.py for the popup walking through to "Fixed" with real workers)."""

import gzip
import json
import re
import time
from pathlib import Path

import pytest
from django.conf import settings

from healing.models import AuditEntry, Issue, Occurrence, Project
from healing.stream import fanout
from tests.healing.conftest import demo_enable

pytestmark = pytest.mark.django_db(transaction=True)

DETECTOR = Path(settings.BASE_DIR) / "healing" / "static" / "kaizen" / "detector.js"
OVERLAY = "#kaizen-overlay"


def test_the_detector_stays_small():
    """The issue's budget is 20 KB minified + gzipped; gzip of the readable source bounds it."""
    size = len(gzip.compress(DETECTOR.read_bytes(), compresslevel=9))
    print(f"detector.js: {DETECTOR.stat().st_size} bytes, {size} bytes gzipped (budget 20480)")
    assert size <= 20 * 1024


@pytest.fixture
def demo_site(live_server, settings):
    """The demo page on a live server, its reports stored at once (direct ingest)."""
    settings.KAIZEN_INGEST_MODE = "direct"
    demo_enable(settings, sandbox_url=live_server.url)
    project = Project.objects.get(slug="demo")
    project.allowed_origins = [*project.allowed_origins, live_server.url]  # the page's own origin
    project.save(update_fields=["allowed_origins"])
    return live_server.url


class Sent:
    """Every request body the page sends, and the reports among them."""

    def __init__(self, page):
        self.page = page
        self.requests: list[tuple[str, str]] = []
        page.on("request", lambda request: self.requests.append((request.url, request.post_data or "")))

    def reports(self) -> list[dict]:
        return [json.loads(body) for url, body in self.requests if "/api/v1/issues" in url]

    def wait_for(self, predicate, *, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.reports():
                if predicate(body):
                    return body
            self.page.wait_for_timeout(100)  # Playwright delivers its events only while it is called
        raise AssertionError(f"no such report among {[(r['type'], r['message']) for r in self.reports()]}")


def open_demo(page, base: str, **query) -> Sent:
    sent = Sent(page)
    page.goto(f"{base}/demo/")
    page.wait_for_function("!!(window.Kaizen && window.KAIZEN_DISPATCH)")
    return sent


def stored(event_id: str, *, timeout: float = 10) -> Occurrence:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        occurrence = Occurrence.objects.filter(event_id=event_id).first()
        if occurrence:
            return occurrence
        time.sleep(0.1)
    raise AssertionError(f"report {event_id} was not stored")


def log_in(page, name: str = "alice") -> None:
    page.fill("#user", name)
    page.click("#login")
    page.wait_for_function("document.getElementById('who').textContent !== ''")
    # The page then shows the balance: a click before that lands would see the page change.
    page.wait_for_function("document.getElementById('balance').textContent !== '\u2013'")


def test_the_session_bug_is_detected_from_the_failed_request(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    log_in(browser_page)
    report = sent.wait_for(lambda r: r["type"] == "AUTH_ISSUE")
    assert report["message"] == "GET /demo/api/me answered 401: Your session has expired. Please log in again."
    assert report["request"] == {"method": "GET", "path": "/demo/api/me", "body": None, "status": 401,
                                 "duration_ms": report["request"]["duration_ms"], "headers": {"X-Demo-User": "alice"}}  # fmt: skip
    assert report["user"] == {"id": "alice"}
    assert [e["target"] for e in report["timeline"] if e["action"] == "click"] == ["button#login"]
    occurrence = stored(report["event_id"])
    assert occurrence.issue.type == "AUTH_ISSUE"
    assert "Authorization" not in json.dumps(occurrence.payload) and "Bearer" not in json.dumps(occurrence.payload)


def test_generate_doing_nothing_is_a_silent_failure_with_its_request(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    log_in(browser_page)
    browser_page.click("#generate")
    clicked = time.monotonic()
    report = sent.wait_for(lambda r: r["type"] == "SILENT_FAILURE")
    waited = time.monotonic() - clicked
    assert 2.5 <= waited < 6, waited  # nothing visible for 3 s, then reported
    assert report["message"] == "Clicked \u201cGenerate\u201d and nothing happened"
    assert report["request"]["method"] == "POST" and report["request"]["path"] == "/demo/api/generate"
    assert report["request"]["body"] == {"prompt": "a cat in a spacesuit"} and report["request"]["status"] == 202
    assert report["request"]["headers"] == {"X-Demo-User": "alice"}
    assert stored(report["event_id"]).issue.type == "SILENT_FAILURE"


def test_a_click_that_changes_the_page_is_no_silent_failure(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    log_in(browser_page)
    browser_page.click("#refresh")  # the balance is written again: a DOM change
    browser_page.wait_for_timeout(3800)
    assert [r for r in sent.reports() if r["type"] == "SILENT_FAILURE"] == []


def test_the_billing_mismatch_is_the_pages_own_report(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    log_in(browser_page)
    browser_page.click("#buy")
    report = sent.wait_for(lambda r: r["type"] == "BILLING_ISSUE")
    assert report["message"] == "I paid for 100 credits but my balance still shows 0"
    assert report["state"] == {"credits": 0, "pending": 100}
    assert report["request"]["path"] == "/demo/api/credits" and "retry" not in report
    assert stored(report["event_id"]).issue.type == "BILLING_ISSUE"


def test_a_typed_password_and_card_number_never_reach_the_server(browser_page, demo_site):
    password, card = "hunter2-Secret!", "4242 4242 4242 4242"
    sent = open_demo(browser_page, demo_site)
    browser_page.fill("#password", password)
    browser_page.fill("#card", card)
    browser_page.fill("#prompt", "my card is 4242424242424242")  # a card number typed where it does not belong
    log_in(browser_page)  # reports AUTH_ISSUE
    browser_page.click("#buy")  # reports BILLING_ISSUE
    for _ in range(3):
        browser_page.click("#card")  # rage clicks on the card field: reported, the field never read
    sent.wait_for(lambda r: r["type"] == "BILLING_ISSUE")
    sent.wait_for(lambda r: r["type"] == "UX_CONFUSION")
    # A product request that carries them and fails: its report masks them.
    browser_page.evaluate(
        """([password, card]) => fetch("/demo/api/purchase", {method: "POST", body: JSON.stringify(
             {password, card_number: card, note: "card " + card.replaceAll(" ", ""), credits: "x"})})""",
        [password, card],
    )
    failed = sent.wait_for(lambda r: r["message"].startswith("POST /demo/api/purchase answered"))
    assert failed["request"]["body"] == {"password": "[masked]", "card_number": "[masked]", "note": "card [card]",
                                         "credits": "x"}  # fmt: skip

    digits = card.replace(" ", "")
    page_requests = [
        (url, body) for url, body in sent.requests if "/demo/api/purchase" not in url or "password" not in body
    ]
    leaked = [(url, body) for url, body in page_requests if password in body or digits in body or card in body]
    assert leaked == []
    for report in sent.reports():
        stored(report["event_id"])
    everything = json.dumps([o.payload for o in Occurrence.objects.all()] + list(Issue.objects.values("title")))
    assert password not in everything and digits not in everything and card not in everything
    assert Occurrence.objects.count() >= 4
    storage = browser_page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert password not in storage and digits not in storage
    inputs = [e for r in sent.reports() for e in r["timeline"] if e["action"] == "input"]
    assert inputs and all(e["detail"] == "[masked]" for e in inputs)
    assert not any(e["target"] in ("input#password", "input#card") for e in inputs)  # not even named


def test_rage_clicks_are_reported_once_as_confusion(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    for _ in range(5):
        browser_page.click("h1", delay=10)
    report = sent.wait_for(lambda r: r["type"] == "UX_CONFUSION")
    assert report["message"] == "Rage clicks on h1"  # not a button: named by its place, never its text
    browser_page.wait_for_timeout(500)
    assert len([r for r in sent.reports() if r["type"] == "UX_CONFUSION"]) == 1


def test_errors_rejections_and_console_errors_are_reported(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    browser_page.evaluate("setTimeout(() => { throw new TypeError('boom in a timer') })")
    browser_page.evaluate("setTimeout(() => Promise.reject(new Error('nobody caught me')))")
    browser_page.evaluate("console.error('the widget failed', {code: 7})")
    thrown = sent.wait_for(lambda r: r["message"] == "boom in a timer")
    assert thrown["type"] == "ERROR" and thrown["exception"]["type"] == "TypeError"
    rejected = sent.wait_for(lambda r: r["message"] == "nobody caught me")
    assert rejected["exception"]["type"] == "Error"
    console = sent.wait_for(lambda r: r["message"].startswith("Console error: the widget failed"))
    assert console["console"][-1]["level"] == "error" and '{"code":7}' in console["console"][-1]["message"]
    assert stored(thrown["event_id"]).issue.type == "ERROR"


def test_a_slow_request_is_reported_past_the_configured_threshold(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    # The threshold comes from the tag (data-slow-ms); a copy of the tag with a small one.
    browser_page.goto(f"{demo_site}/demo/")
    browser_page.evaluate("""() => { delete window.Kaizen; const old = document.querySelector("script[data-key]");
        const tag = document.createElement("script"); tag.src = old.src + "?slow"; tag.dataset.key = old.dataset.key;
        tag.dataset.slowMs = "1"; document.body.appendChild(tag); }""")
    browser_page.wait_for_function("!!window.Kaizen")
    browser_page.evaluate("fetch('/demo/api/credits', {headers: {'X-Demo-User': 'alice'}})")
    slow = sent.wait_for(lambda r: r["type"] == "SLOW_RESPONSE")
    assert re.fullmatch(r"GET /demo/api/credits took \d+ ms", slow["message"])


def test_reports_made_offline_are_queued_and_sent_when_back_online(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    context = browser_page.context
    context.set_offline(True)
    browser_page.evaluate(
        "Kaizen.report({type: 'USER_REPORTED', message: 'written on a train', description: 'offline'})"
    )
    browser_page.wait_for_function("Object.keys(localStorage).some(k => k.endsWith(':queue'))")
    queued = browser_page.evaluate(
        "JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith(':queue'))))"
    )
    assert len(queued) == 1 and json.loads(queued[0]["body"])["message"] == "written on a train"
    assert not Occurrence.objects.filter(message="written on a train").exists()
    context.set_offline(False)
    report = sent.wait_for(lambda r: r["message"] == "written on a train")
    assert stored(report["event_id"]).payload["description"] == "offline"
    browser_page.wait_for_function("!Object.keys(localStorage).some(k => k.endsWith(':queue'))")


def test_the_same_problem_is_reported_once(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    for _ in range(3):
        browser_page.evaluate("Kaizen.report({type: 'ERROR', message: 'the same thing again'})")
    browser_page.wait_for_timeout(1000)
    assert len([r for r in sent.reports() if r["message"] == "the same thing again"]) == 1


def test_dispatch_runs_known_commands_and_refuses_the_rest(browser_page, demo_site):
    open_demo(browser_page, demo_site)
    log_in(browser_page)
    browser_page.fill("#prompt", "a dog")
    browser_page.evaluate("document.getElementById('result').textContent = ''")
    assert browser_page.evaluate("KAIZEN_DISPATCH({type: 'retry', target: 'button#refresh'})") is True
    browser_page.wait_for_function("document.getElementById('balance').textContent === '0'")
    assert browser_page.evaluate(
        "KAIZEN_DISPATCH({type: 'show_message', payload: {message: '**Hello** from the team'}})"
    )
    assert "Hello from the team" in browser_page.locator(f"{OVERLAY} .panel").inner_text()
    refused = [
        {"type": "format_disk"},
        {"type": "retry", "target": "input#password"},  # not a button or link: never clicked
        {"type": "retry", "target": "button#buy", "payload": [1]},
        {"type": "show_message"},
        {"target": "button#buy"},
        "retry",
        None,
    ]
    for command in refused:
        assert browser_page.evaluate("(c) => KAIZEN_DISPATCH(c)", command) is False, command
    # Each refusal is reported to the server (the owner sees them in the audit log), with its reason.
    deadline = time.monotonic() + 10
    while AuditEntry.objects.filter(action="session.command_ignored").count() < len(refused):
        assert time.monotonic() < deadline, list(AuditEntry.objects.values_list("action", "detail"))
        browser_page.wait_for_timeout(100)
    reasons = sorted(
        AuditEntry.objects.filter(action="session.command_ignored").values_list("detail__reason", flat=True)
    )
    assert reasons == sorted(["unknown type", "retry target is not a button or link", "payload must be an object",
                              "show_message needs payload.message", "no type", "not an object", "not an object"])  # fmt: skip
    assert "pending" not in browser_page.locator("#balance").inner_text()  # Buy was never clicked


def test_the_help_button_sends_the_users_words(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    help_button = browser_page.locator(f"{OVERLAY} button.help")
    help_button.click()
    panel = browser_page.locator(f"{OVERLAY} .panel")
    assert panel.get_attribute("role") == "dialog"
    browser_page.keyboard.type("The export button greys out and never comes back")  # the textarea has focus
    panel.get_by_role("button", name="Send").click()
    report = sent.wait_for(lambda r: r["type"] == "USER_REPORTED")
    assert report["description"] == "The export button greys out and never comes back"
    assert stored(report["event_id"]).issue.type == "USER_REPORTED"
    assert "Thanks, we got your message" in panel.inner_text()


def test_the_overlay_works_from_the_keyboard(browser_page, demo_site):
    open_demo(browser_page, demo_site)
    help_button = browser_page.locator(f"{OVERLAY} button.help")
    help_button.focus()
    browser_page.keyboard.press("Enter")
    panel = browser_page.locator(f"{OVERLAY} .panel")
    assert panel.is_visible() and help_button.get_attribute("aria-expanded") == "true"
    focused = "document.querySelector('#kaizen-overlay').shadowRoot.activeElement"
    assert browser_page.evaluate(f"{focused}.id") == "kz-describe"
    for _ in range(5):  # Tab cycles inside the open panel: close, textarea, Send
        browser_page.keyboard.press("Tab")
        assert browser_page.evaluate(f"document.activeElement.id === 'kaizen-overlay' && !!{focused}.closest('.panel')")
    browser_page.keyboard.press("Escape")
    assert not panel.is_visible()
    assert browser_page.evaluate(f"{focused}.classList.contains('help')")  # focus back on the Help button
    assert browser_page.locator(f"{OVERLAY} [aria-live=polite]").count() == 1


def test_the_popup_appears_at_once_when_a_click_fails(browser_page, demo_site):
    sent = open_demo(browser_page, demo_site)
    log_in(browser_page)
    panel = browser_page.locator(f"{OVERLAY} .panel")
    panel.wait_for(state="visible", timeout=3000)
    assert sent.wait_for(lambda r: r["type"] == "AUTH_ISSUE")
    assert panel.get_attribute("data-stage") == "detected"
    assert "Your sign-in ran into a problem" in panel.inner_text()


# In the page: each time the panel opens (its title then), and each announcement of its live region.
WATCH = """() => { const root = document.querySelector('#kaizen-overlay').shadowRoot;
  const panel = root.querySelector('.panel'), live = root.querySelector('[aria-live]');
  window.kzSeen = {opened: [], announced: []}; let hidden = panel.hidden;
  new MutationObserver(() => { if (hidden && !panel.hidden) window.kzSeen.opened.push(panel.querySelector('h2').textContent);
    hidden = panel.hidden; }).observe(panel, {attributes: true, attributeFilter: ['hidden']});
  new MutationObserver(() => window.kzSeen.announced.push(live.textContent)).observe(live, {childList: true, characterData: true, subtree: true}); }"""


def stream_served(page) -> list[str]:
    """Serve the user's event stream from the test: each connection gets the events appended to
    the returned list since the last one (the browser reconnects after 200 ms)."""
    pending: list[str] = []

    def stream(route):
        body = "retry: 200\n\n" + "".join(pending)
        pending.clear()
        route.fulfill(
            status=200, body=body, headers={"Content-Type": "text/event-stream", "Access-Control-Allow-Origin": "*"}
        )

    page.route("**/api/v1/sessions/*/events*", stream)
    return pending


def test_a_stage_told_again_is_not_announced_again_nor_reopens_the_panel(browser_page, demo_site):
    """The page shows "We noticed a problem" itself, then the server tells the same stage in its
    own words: the open panel takes the words, a screen reader hears the stage once, and a panel
    the user hid stays hidden when the stage is told yet again; meeting the problem again brings
    it back. The user's event stream is served here by the test (the stream server is not running)."""
    page = browser_page
    pending = stream_served(page)
    sent = open_demo(page, demo_site)
    page.evaluate(WATCH)
    log_in(page)  # the demo's session bug: the page's own popup
    panel = page.locator(f"{OVERLAY} .panel")
    panel.wait_for(state="visible", timeout=3000)
    issue = stored(sent.wait_for(lambda r: r["type"] == "AUTH_ISSUE")["event_id"]).issue
    detected = fanout.status_payload(issue_id=issue.pk, stage="detected", issue_type=issue.type)
    assert detected["message"] not in panel.inner_text()  # the server's words differ from the page's
    pending.append(f"event: status\ndata: {json.dumps(detected)}\n\n")
    page.wait_for_function(
        "(words) => document.querySelector('#kaizen-overlay').shadowRoot.querySelector('.panel').textContent.includes(words)",
        arg=detected["message"][:40],
        timeout=10000,
    )
    panel.get_by_role("button", name="Hide").click()
    page.evaluate("window.kzSeen.opened = []")
    owner = {"message": "after the repeat", "from": "owner"}
    pending.append(f"event: status\ndata: {json.dumps(detected)}\n\nevent: message\ndata: {json.dumps(owner)}\n\n")
    page.wait_for_function(
        "() => document.querySelector('#kaizen-overlay').shadowRoot.querySelector('.panel').textContent.includes('after the repeat')",
        timeout=10000,
    )
    seen = page.evaluate("window.kzSeen")
    assert seen["opened"] == ["A message from the team"]  # not "We noticed a problem" again
    told = [text for text in seen["announced"] if text.startswith("We noticed a problem")]
    assert len(told) == 1, seen["announced"]  # the page's own notice, not the server's repeats

    # The user meets the same problem again: it is not reported twice, but its popup comes back.
    panel.get_by_role("button", name="Close").click()
    page.click("#login")
    panel.wait_for(state="visible", timeout=3000)
    assert panel.locator("h2").inner_text() == "We noticed a problem"
    assert len([r for r in sent.reports() if r["type"] == "AUTH_ISSUE"]) == 1


def test_a_fix_is_announced_without_its_title_said_twice(browser_page, demo_site):
    """The words of a fix begin with "Fixed.", which is also the panel's title: a screen reader
    hears it once."""
    page = browser_page
    pending = stream_served(page)
    sent = open_demo(page, demo_site)
    page.evaluate(WATCH)
    log_in(page)
    panel = page.locator(f"{OVERLAY} .panel")
    panel.wait_for(state="visible", timeout=3000)
    issue = stored(sent.wait_for(lambda r: r["type"] == "AUTH_ISSUE")["event_id"]).issue
    fixed = fanout.status_payload(issue_id=issue.pk, stage="deployed", issue_type=issue.type)
    assert fixed["message"].startswith("**Fixed.**") and panel.locator("h2").inner_text() != "Fixed"
    pending.append(f"event: status\ndata: {json.dumps(fixed)}\n\n")
    page.wait_for_function(
        "() => document.querySelector('#kaizen-overlay').shadowRoot.querySelector('.panel').dataset.stage === 'deployed'",
        timeout=10000,
    )
    assert panel.locator("h2").inner_text() == "Fixed"
    announced = page.evaluate("window.kzSeen.announced")
    assert announced[-1].startswith("Fixed. You can sign in again now"), announced
    assert announced[0].startswith("We noticed a problem. ")  # a title the words don't begin with is said


def test_the_panel_fits_a_phone_and_keeps_still_for_reduced_motion(browser_page, demo_site):
    browser_page.set_viewport_size({"width": 360, "height": 640})
    browser_page.emulate_media(reduced_motion="reduce")
    open_demo(browser_page, demo_site)
    browser_page.locator(f"{OVERLAY} button.help").click()
    panel = browser_page.locator(f"{OVERLAY} .panel")
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["y"] >= 0
    style = "(el) => [getComputedStyle(el).transitionDuration, getComputedStyle(el).backdropFilter]"
    duration, backdrop = panel.evaluate(style)
    assert duration == "0s" and "blur" in backdrop  # the glass stays, the motion goes
