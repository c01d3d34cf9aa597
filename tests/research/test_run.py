"""A whole run: `manage.py research run` (thread pool) and the scheduled Celery fan-out, over
sources faked at the HTTP boundary; ten proposals, the ready alert, the summary table."""

from io import StringIO

import pytest
import responses
from django.core.management import CommandError, call_command

from healing.models import AuditEntry
from notifications.models import Notification
from notifications.owner_alert import EventType
from research.models import Category, Keyword, Proposal, ResearchRun, Source, SourceFetch, SourceKind
from research.tasks import daily_run, fetch_source, finish
from tests.research.conftest import changelog_page

pytestmark = pytest.mark.django_db(transaction=True)

TOPICS = [
    "LLM agents that fix web app bugs", "Streaming API responses for AI chat", "Prompt caching cuts LLM cost",
    "Browser agents fill forms", "Edge inference for web apps", "Open model beats GPT on code", "RAG over docs",
    "Accessibility audit with AI", "TypeScript types from API schema", "Faster CSS with AI lint",
    "Agent memory for support bots", "LLM evals in CI", "Onboarding copy written by AI", "Button label tests via AI",
]  # fmt: skip


def rss(prefix: str, titles: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><link>https://{prefix}.example/{i}</link><guid>{prefix}-{i}</guid>"
        f"<description>{t}: details for web developers.</description></item>"
        for i, t in enumerate(titles)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{prefix}</title>{items}</channel></rss>'.encode()


@pytest.fixture
def sources():
    Source.objects.all().delete()
    Keyword.objects.all().delete()
    Keyword.objects.bulk_create([Keyword(word=w) for w in ("ai", "llm", "agents", "agent", "api", "web")])
    made = [
        Source.objects.create(kind=SourceKind.FEED, name="Feed A", url="https://a.example/rss"),
        Source.objects.create(kind=SourceKind.FEED, name="Feed B", url="https://b.example/rss"),
        Source.objects.create(kind=SourceKind.CHANGELOG, name="Rival", url="https://rival.example/changelog"),
        Source.objects.create(kind=SourceKind.FEED, name="Down", url="https://down.example/rss"),
    ]
    responses.get("https://a.example/rss", body=rss("a", TOPICS[:7]))
    responses.get("https://b.example/rss", body=rss("b", TOPICS[7:]))
    responses.get(
        "https://rival.example/changelog",
        body=changelog_page(("v9", "v9", ["Added a shortcut to copy the share link", "Introducing team workspaces"])),
    )
    responses.get("https://down.example/rss", status=502)
    return made


@responses.activate
def test_command_run_makes_ten_proposals_and_alerts(sources):
    out = StringIO()
    call_command("research", "run", stdout=out)
    text = out.getvalue()
    assert "4/4" in text and "Down" in text and "HTTP 502" in text
    assert "10 proposals for" in text
    proposals = Proposal.objects.all()
    assert proposals.count() == 10
    assert {p.origin for p in proposals} >= {"news", "competitor"}
    assert proposals.filter(category=Category.QUICK_FIX).exists()
    news = proposals.filter(origin="news").first()
    assert news.sources.count() == 1
    run = ResearchRun.objects.get()
    assert run.finished_at and run.summary["errors"] == 1 and run.summary["proposals"] == 10
    alert = AuditEntry.objects.get(action="owner.alert", target=f"research:{run.day}")
    assert alert.detail["event"] == EventType.ENHANCEMENT_READY
    ready = Notification.objects.get(kind=EventType.ENHANCEMENT_READY)
    assert (ready.severity, ready.title) == ("P1", "10 enhancement proposals are ready")
    assert alert.detail["high_impact"] + alert.detail["quick_fix"] == 10
    # Same day again: nothing refetched, no second list, no second alert.
    call_command("research", "run", stdout=StringIO())
    assert Proposal.objects.count() == 10
    assert AuditEntry.objects.filter(action="owner.alert", target=f"research:{run.day}").count() == 1
    assert len([c for c in responses.calls if c.request.url == "https://a.example/rss"]) == 1


@responses.activate
def test_command_dry_run_and_one_source(sources):
    out = StringIO()
    call_command("research", "run", "--source", "Feed A", "--dry-run", stdout=out)
    assert "Dry run: 7 items parsed, nothing stored." in out.getvalue()
    assert not Proposal.objects.exists() and not ResearchRun.objects.exists()
    with pytest.raises(CommandError, match="No source named Nope"):
        call_command("research", "run", "--source", "Nope", stdout=StringIO())


@responses.activate
def test_scheduled_run_fans_out_and_the_last_source_finishes(sources, celery_eager):
    run_id = daily_run()
    run = ResearchRun.objects.get(pk=run_id)
    assert run.expected == 4 and run.trigger == "schedule"
    assert SourceFetch.objects.filter(run=run).count() == 4
    assert run.claimed_at is not None and run.finished_at is not None
    assert Proposal.objects.filter(run=run).count() == 10
    # The late safety finish (and any redelivery) finds the run claimed: no second list or alert.
    assert finish(run.pk) == 10
    fetch_source(run.pk, sources[0].pk)  # a redelivered source task
    assert Proposal.objects.count() == 10 and SourceFetch.objects.filter(run=run).count() == 4
    assert AuditEntry.objects.filter(action="owner.alert", target=f"research:{run.day}").count() == 1
