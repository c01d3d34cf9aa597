"""The End users page: search by id or email; sessions, issues and flag overrides; a message to a
live session, down the session's event stream."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from flags import services as flag_services
from healing.models import AuditEntry, SessionEvent, SessionEventKind, UserSession
from tests.factories import IssueFactory, OccurrenceFactory, ProjectFactory
from tests.owner import owner_staff

pytestmark = pytest.mark.django_db

URL = "/admin/healing/end-users/"


@pytest.fixture
def alice(project):
    """A user with reports on two issues, two sessions (one live) and a flag override."""
    login = IssueFactory(project=project, title="Session expires right after login")
    credits = IssueFactory(project=project, title="Paid credits do not show")
    other = IssueFactory(project=project, title="Someone else's problem")
    now = timezone.now()
    for i in range(3):
        OccurrenceFactory(
            issue=login, user_id="u-42", user_email="Alice@Example.com", received_at=now - timedelta(hours=i)
        )
    OccurrenceFactory(issue=credits, user_id="u-42", received_at=now - timedelta(days=2))
    OccurrenceFactory(issue=other, user_id="u-7", user_email="bob@example.com")
    live = UserSession.objects.create(project=project, session_id="s-live-0001", user_id="u-42",
                                      user_email="alice@example.com", last_seen_at=now - timedelta(minutes=1))  # fmt: skip
    old = UserSession.objects.create(project=project, session_id="s-old-0002", user_id="u-42",
                                     last_seen_at=now - timedelta(days=3))  # fmt: skip
    flag = flag_services.flag_create(project=project, key="session-refresh-fix", actor="alice")
    flag_services.override_set(flag=flag, user_id="u-42", enabled=True, actor="kaizen", why="canary for KAIZ-001")
    return {"login": login, "credits": credits, "live": live, "old": old, "flag": flag}


def test_search_by_email_finds_sessions_issues_and_overrides(admin_client, alice):
    response = admin_client.get(URL, {"q": "alice@example.com"})  # any case

    assert response.status_code == 200
    user = response.context["end_user"]
    assert user.user_ids == ["u-42"] and user.emails == ["Alice@Example.com", "alice@example.com"]
    assert [s.session_id for s in user.sessions] == ["s-live-0001", "s-old-0002"]
    # Found by email, the reports sent under their id alone are theirs too.
    assert [(row.issue.title, row.reports) for row in user.issues] == [
        ("Session expires right after login", 3), ("Paid credits do not show", 1)
    ]  # fmt: skip
    assert [(o.flag.key, o.enabled) for o in user.overrides] == [("session-refresh-fix", True)]
    page = response.content.decode()
    assert f"/admin/healing/issue/{alice['login'].pk}/change/" in page
    assert f"/admin/flags/flag/{alice['flag'].pk}/change/" in page
    assert f"/admin/healing/usersession/{alice['live'].pk}/change/" in page  # commands are sent from there
    assert page.count('<span class="tag">live</span>') == 1
    assert "Someone else" not in page
    assert "<strong>admin</strong>." in page  # the console user in the header, not the one found


def test_search_by_id_groups_every_issue_they_met(admin_client, alice):
    user = admin_client.get(URL, {"q": "u-42"}).context["end_user"]
    assert [(row.issue.title, row.reports) for row in user.issues] == [
        ("Session expires right after login", 3), ("Paid credits do not show", 1)
    ]  # fmt: skip


def test_an_unknown_user_and_an_empty_search(admin_client, alice):
    assert "No user “nobody” in the reports or sessions." in admin_client.get(URL, {"q": "nobody"}).content.decode()
    assert admin_client.get(URL, {"q": ""}).status_code == 400
    assert admin_client.get(URL).status_code == 200


def test_a_message_goes_down_the_sessions_stream_and_is_audited(admin_client, alice):
    response = admin_client.post(URL, {"q": "u-42", "session": alice["live"].pk, "text": "We fixed it, try again!"})

    assert response.status_code == 302 and response.url == f"{URL}?q=u-42"
    event = SessionEvent.objects.get(session=alice["live"])
    assert event.kind == SessionEventKind.MESSAGE
    assert event.payload["message"] == "We fixed it, try again!" and event.payload["from"] == "owner"
    entry = AuditEntry.objects.get(action="session.message")
    assert (entry.actor, entry.target, entry.detail["event"]) == ("admin", f"user-session:{alice['live'].pk}", event.pk)
    assert "Message sent to the live session." in admin_client.get(response.url).content.decode()


def test_a_bad_message_writes_nothing(admin_client, alice):
    assert admin_client.post(URL, {"q": "u-42", "session": alice["live"].pk, "text": ""}).status_code == 400
    assert admin_client.post(URL, {"q": "u-42", "session": "x", "text": "hi"}).status_code == 400
    assert admin_client.post(URL, {"q": "u-42", "session": alice["live"].pk, "text": "x" * 501}).status_code == 400
    response = admin_client.post(URL, {"q": "u-42", "session": 999_999, "text": "hi"}, follow=True)
    assert "That session no longer exists." in response.content.decode()
    assert not SessionEvent.objects.exists() and not AuditEntry.objects.filter(action="session.message").exists()


def test_the_page_reads_a_bounded_number_of_rows(admin_client, alice, project):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(URL, {"q": "u-42"}).status_code == 200
        return len(captured)

    baseline = queries()
    for i in range(10):
        OccurrenceFactory(issue=IssueFactory(project=ProjectFactory()), user_id="u-42")
        UserSession.objects.create(project=project, session_id=f"s-more-{i}", user_id="u-42")
    assert queries() == baseline


def test_messages_need_the_change_permission(client, alice, settings):
    owner_staff(client, settings, permissions=("view_issue",))

    assert client.get(URL, {"q": "u-42"}).status_code == 200
    assert client.post(URL, {"q": "u-42", "session": alice["live"].pk, "text": "hi"}).status_code == 403
    assert not SessionEvent.objects.exists()
