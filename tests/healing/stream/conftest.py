"""Sessions of the product's users, and a report of an issue from one of them."""

import pytest

from healing.models import Issue, Stage, UserSession
from healing.stream import sessions
from tests.factories import IssueFactory, OccurrenceFactory


def session_new(*, project, name: str = "", user_id: str = "") -> UserSession:
    user = {"id": user_id, "name": name} if name or user_id else None
    return sessions.session_create(project_id=project.pk, user=user)


def reported(*, session: UserSession, issue: Issue) -> None:
    """The session met `issue`: one occurrence carrying its id, as the detector's report stores it."""
    OccurrenceFactory(issue=issue, session_id=session.session_id)


@pytest.fixture
def issue(project):
    return IssueFactory(project=project, type="SILENT_FAILURE", stage=Stage.DETECTED, title="Generate did nothing")


@pytest.fixture
def user_session(project, issue):
    session = session_new(project=project, name="Ada Lovelace", user_id="42")
    reported(session=session, issue=issue)
    return session
