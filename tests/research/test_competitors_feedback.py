"""The competitor monitor (new entries since the snapshot, features, gaps against capabilities)
and the feedback analyzer (themes ranked by frequency × users × recency)."""

from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from healing.models import IssueType
from research.collect import source_collect
from research.competitors import capability_match, features_extract, gaps_open
from research.feedback import feedback_analyze, theme_rank
from research.models import Capability, CompetitorFeature, ResearchRun, Source, SourceItem, SourceKind
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory
from tests.research.conftest import changelog_page

pytestmark = pytest.mark.django_db
URL = "https://rival.example/changelog"


def test_features_from_bullets_without_fixes():
    found = features_extract(
        title="March release",
        summary="Added real-time collaboration\nFixed a crash on save\nIntroducing deploy previews.\nSteps:\nPerf",
    )
    assert found == ["real-time collaboration", "deploy previews"]
    assert features_extract(title="Introducing dark mode", summary="dark mode") == ["dark mode"]


def test_capability_match_by_name_or_alias():
    caps = [Capability(name="Deploy previews", aliases="preview links"), Capability(name="SSO login")]
    assert capability_match(feature="deploy previews for every branch", capabilities=caps).name == "Deploy previews"
    assert capability_match(feature="Shareable preview links", capabilities=caps).name == "Deploy previews"
    assert capability_match(feature="real-time collaboration", capabilities=caps) is None


@responses.activate
def test_new_entries_since_the_snapshot_are_diffed_and_gaps_flagged():
    Capability.objects.create(name="Deploy previews")
    source = Source.objects.create(
        kind=SourceKind.CHANGELOG, name="Rival", url=URL, params={"entry_selector": "article"}
    )
    before = changelog_page(("v1", "v1", ["Added deploy previews"]))
    after = changelog_page(
        ("v2", "v2", ["Added real-time collaboration", "Fixed login bug"]), ("v1", "v1", ["Added deploy previews"])
    )
    responses.get(URL, body=before)
    responses.get(URL, body=after)
    run = ResearchRun.objects.create(day=timezone.localdate())
    source_collect(source=source, run=run)
    first = CompetitorFeature.objects.get()
    assert first.feature == "deploy previews" and not first.gap and first.matched.name == "Deploy previews"
    source.refresh_from_db()
    source_collect(source=source, run=run, force=True)
    gap = CompetitorFeature.objects.get(gap=True)
    assert gap.feature == "real-time collaboration" and gap.entry_url == f"{URL}#v2"
    assert set(SourceItem.objects.values_list("url", flat=True)) == {f"{URL}#v1", f"{URL}#v2"}  # one item each
    source.refresh_from_db()
    assert source.snapshot["new_entries"] == 1 and "+v2" in source.snapshot["diff"]
    assert [g.feature for g in gaps_open()] == ["real-time collaboration"]
    Capability.objects.create(name="Collaboration", aliases="real-time collaboration")
    assert gaps_open() == []  # a capability added since closes the gap


def test_feedback_themes_cluster_and_rank():
    now = timezone.now()
    confusion = IssueFactory(type=IssueType.UX_CONFUSION, title="Cannot find the export button")
    for user in ("u1", "u2", "u3"):
        OccurrenceFactory(issue=confusion, user_id=user, message="Where is the export button? cannot find export",
                          payload={"description": "I cannot find the export button for reports"})  # fmt: skip
    reported = IssueFactory(type=IssueType.USER_REPORTED, title="Dark mode please")
    OccurrenceFactory(issue=reported, user_id="u9", message="Please add a dark mode theme",
                      received_at=now - timedelta(days=20))  # fmt: skip
    asked = IssueFactory(type=IssueType.ERROR, title="Checkout failed")
    IssueEventFactory(issue=asked, stage="needs_input", created_at=now - timedelta(hours=2))
    OccurrenceFactory(issue=asked, user_id="u4", message="I was paying with a gift card when it failed")
    OccurrenceFactory(issue=IssueFactory(type=IssueType.ERROR), message="TypeError in cart")  # not feedback
    run = ResearchRun.objects.create(day=timezone.localdate())
    themes = feedback_analyze(run=run, now=now)
    assert [(t.reports, t.users) for t in themes] == [(3, 3), (1, 1), (1, 1)]
    assert "export" in themes[0].label
    assert themes[1].examples == ["I was paying with a gift card when it failed"]  # recent beats 20 days old
    assert themes[0].rank == pytest.approx(9, rel=0.01)


def test_rank_halves_per_week():
    now = timezone.now()
    assert theme_rank(reports=4, users=2, last_seen=now - timedelta(days=7), now=now) == pytest.approx(4)
