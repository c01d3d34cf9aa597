"""The user's event stream as the page lives it, in headless Chromium against the live service:
the owner's message and page commands arrive and run (a malformed one is refused and reported,
never run), an expired stream token is refreshed and the stream reopened without losing an event,
and "Try again" with consent records the attempt with rrweb (served as JavaScript under nosniff)
and uploads it, with the typed password nowhere in it; a question gets a text box whose answer
lands on the issue's timeline."""

import time

import pytest

from healing.models import AuditEntry, Issue, IssueEvent, SessionEvent, SessionEventKind, SessionRecording, UserSession
from healing.stream import fanout

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OVERLAY = "#kaizen-overlay"
SESSION = "JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.endsWith(':session'))))"


@pytest.fixture
def short_tokens(monkeypatch):
    """Stream tokens good for 4 s and streams that end after 2 s, so the page must refresh and
    reopen several times (the service fixture hands the processes this environment)."""
    monkeypatch.setenv("KAIZEN_SESSION_TOKEN_SECONDS", "4")
    monkeypatch.setenv("KAIZEN_STREAM_MAX_SECONDS", "2")
    monkeypatch.setenv("KAIZEN_STREAM_RETRY_MS", "200")


def _wait(predicate, *, page, timeout: float = 15, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)  # Playwright delivers its events only while it is called
    raise AssertionError(f"timed out waiting for {what}")


def test_the_stream_reaches_the_page(short_tokens, service, browser_page):
    page = browser_page
    requests_seen: list[str] = []
    scripts: dict[str, str] = {}
    page.on("request", lambda r: requests_seen.append(r.url))
    page.on(
        "response",
        lambda r: (
            scripts.__setitem__(r.url, r.headers.get("content-type", ""))
            if ".cjs" in r.url and r.request.method == "GET"
            else None
        ),
    )
    page.goto(f"{service['base']}/demo/")
    page.wait_for_function(f"!!(window.Kaizen && {SESSION})")
    session = UserSession.objects.get(session_id=page.evaluate(f"{SESSION}.id"))
    panel = page.locator(f"{OVERLAY} .panel")

    # The owner's direct message.
    fanout.session_message(session=session, text="**Hello** from the team")
    panel.wait_for(state="visible")
    _wait(lambda: "Hello from the team" in panel.inner_text(), page=page, what="the owner's message")
    assert panel.locator("h2").inner_text() == "A message from the team"
    assert panel.locator("strong").inner_text() == "Hello"  # markdown, as elements, never as HTML

    # Tokens expire every 4 s and streams end every 2 s: after a while the page has refreshed its
    # token and reopened the stream, and an event sent now still arrives.
    page.wait_for_timeout(9000)
    assert any("/token?" in url for url in requests_seen), "the page never refreshed its stream token"
    fanout.session_command(session=session, type="show_message", payload={"message": "after the token rolled"})
    _wait(lambda: "after the token rolled" in panel.inner_text(), page=page, what="an event after the refresh")
    _wait(lambda: AuditEntry.objects.filter(action="session.command_done", target=f"user-session:{session.pk}").exists(),
          page=page, what="the page reporting the command it ran")  # fmt: skip

    # A command the page does not know, and a malformed one: refused, reported, never run.
    for payload in (
        {"type": "format_disk", "target": None, "payload": {}},
        {"type": "retry", "target": "input#password"},
    ):
        row = SessionEvent.objects.create(session=session, kind=SessionEventKind.COMMAND, payload=payload)
        fanout.events_publish(events=[row])
    refused = _wait(
        lambda: list(AuditEntry.objects.filter(action="session.command_ignored", target=f"user-session:{session.pk}")
                     .values_list("detail", flat=True)) if AuditEntry.objects.filter(
            action="session.command_ignored", target=f"user-session:{session.pk}").count() == 2 else None,
        page=page, what="both refusals reported",
    )  # fmt: skip
    assert sorted(d["reason"] for d in refused) == ["retry target is not a button or link", "unknown type"]

    # Assisted reproduction: Kaizen asks the user to try again; recording starts only with consent.
    page.fill("#password", "hunter2-Secret!")
    page.evaluate(
        "Kaizen.report({type: 'USER_REPORTED', message: 'My balance never updates', retry: 'button#refresh'})"
    )
    _wait(lambda: panel.get_attribute("data-issue"), page=page, what="the report's issue")
    issue = Issue.objects.get(pk=panel.get_attribute("data-issue"))
    fanout.reproduction_request(session=UserSession.objects.get(pk=session.pk), issue=issue)
    consent = page.locator(f"{OVERLAY} #kz-consent")
    consent.wait_for(state="visible", timeout=10000)
    assert not SessionRecording.objects.exists() and page.evaluate("window.rrweb === undefined")  # not even loaded
    consent.check()
    panel.get_by_role("button", name="Try again").click()
    recording = _wait(lambda: SessionRecording.objects.filter(issue=issue).first(), page=page, timeout=30,
                      what="the uploaded recording")  # fmt: skip
    assert recording.session_id == session.pk and recording.event_count > 0
    assert "hunter2" not in str(recording.events)  # rrweb masks every input
    (content_type,) = scripts.values()
    assert content_type.startswith("text/javascript")  # runs under X-Content-Type-Options: nosniff

    # Kaizen needs the user's input: a text box, whose answer lands on the issue's timeline.
    question = fanout.status_payload(issue_id=issue.pk, stage="needs_input", issue_type=issue.type)
    question["question"] = "Which page were you on when it happened?"
    row = SessionEvent.objects.create(session=session, issue=issue, kind=SessionEventKind.STATUS, payload=question)
    fanout.events_publish(events=[row])
    answer = page.locator(f"{OVERLAY} #kz-answer")
    answer.wait_for(state="visible", timeout=10000)
    assert "Which page were you on" in panel.inner_text()
    answer.fill("On the credits page, after paying")
    panel.get_by_role("button", name="Send answer").click()
    _wait(lambda: IssueEvent.objects.filter(issue=issue, detail__contains="On the credits page, after paying").exists(),
          page=page, what="the user's answer on the issue's timeline")  # fmt: skip
