"""Research data: where news comes from, what was fetched, what competitors ship, what users
struggle with, and the proposals the owner decides on each morning."""

from django.db import models
from django.utils import timezone


class SourceKind(models.TextChoices):
    FEED = "feed", "RSS/Atom feed"
    PAGE = "page", "News page (scraped)"
    HACKERNEWS = "hackernews", "Hacker News"
    GITHUB_TRENDING = "github_trending", "GitHub trending"
    REDDIT = "reddit", "Reddit"
    CHANGELOG = "changelog", "Competitor changelog"


class Source(models.Model):
    kind = models.CharField(max_length=20, choices=SourceKind.choices)
    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, blank=True, help_text="Empty for Reddit (the subreddit is in params).")
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per kind: {"subreddit": "webdev"}, {"limit": 30}, {"entry_selector": "article"}, '
        '{"item_selector": "article", "link_selector": "a"}.',
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True, help_text="Last attempt, whatever its outcome.")
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff: not fetched before this.")
    last_error = models.TextField(blank=True)
    snapshot = models.JSONField(
        default=dict, blank=True, help_text="Changelogs: hashes and titles of the entries seen last time."
    )

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name


class ResearchRun(models.Model):
    day = models.DateField(help_text="The owner's local date the run is for.")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=20, default="schedule")  # schedule | command | bench
    expected = models.PositiveIntegerField(default=0, help_text="Sources sent out; the last to report finishes.")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When the finishing step took the run.")
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"research {self.day} ({self.trigger})"


class FetchOutcome(models.TextChoices):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    SKIPPED = "skipped"  # backoff, disabled, or already fetched today
    ERROR = "error"


class SourceFetch(models.Model):
    """One source in one run: what came back and how long it took."""

    run = models.ForeignKey(ResearchRun, on_delete=models.CASCADE, related_name="fetches")
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="fetches")
    outcome = models.CharField(max_length=20, choices=FetchOutcome.choices)
    items = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    relevant = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    problems = models.JSONField(default=list, blank=True, help_text="Parse warnings that did not stop the source.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "source"], name="sourcefetch_unique_run_source")]


class SourceItem(models.Model):
    """A fetched item (the spec's enhancement_sources). Unique by canonical URL: the same article
    reached through two sources is one item."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=500)
    canonical_url = models.CharField(max_length=1000, unique=True)
    url = models.URLField(max_length=1000)
    title = models.CharField(max_length=500)
    summary = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)
    relevant = models.BooleanField(default=False)
    signal = models.FloatField(default=0, help_text="Source-specific popularity (points, stars today, upvotes).")

    class Meta:
        ordering = ["-fetched_at"]
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="sourceitem_unique_external")]
        indexes = [models.Index(fields=["relevant", "-fetched_at"])]

    def __str__(self) -> str:
        return self.title


class Keyword(models.Model):
    """The relevance filter: an item is kept for analysis when one of these appears in it."""

    word = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.word


class Capability(models.Model):
    """What the owner's product can do; competitor features are compared with this list."""

    name = models.CharField(max_length=200, unique=True)
    aliases = models.TextField(blank=True, help_text="Other words for it, one per line.")

    class Meta:
        verbose_name_plural = "capabilities"

    def __str__(self) -> str:
        return self.name


class CompetitorFeature(models.Model):
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="features")
    entry_title = models.CharField(max_length=500)
    entry_url = models.URLField(max_length=1000, blank=True)
    feature = models.CharField(max_length=500)
    gap = models.BooleanField(help_text="The competitor has it and no capability of ours matches.")
    matched = models.ForeignKey(Capability, null=True, blank=True, on_delete=models.SET_NULL)
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-found_at"]
        constraints = [models.UniqueConstraint(fields=["source", "feature"], name="competitorfeature_unique")]

    def __str__(self) -> str:
        return f"{self.source}: {self.feature}"


class FeedbackTheme(models.Model):
    run = models.ForeignKey(ResearchRun, on_delete=models.CASCADE, related_name="themes")
    label = models.CharField(max_length=300)
    reports = models.PositiveIntegerField()
    users = models.PositiveIntegerField()
    last_seen = models.DateTimeField()
    rank = models.FloatField(help_text="Frequency × affected users × recency.")
    examples = models.JSONField(default=list)

    class Meta:
        ordering = ["-rank"]

    def __str__(self) -> str:
        return self.label


class Category(models.TextChoices):
    HIGH_IMPACT = "HIGH_IMPACT"
    QUICK_FIX = "QUICK_FIX"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed"
    SCHEDULED = "scheduled"
    IMPLEMENTING = "implementing"
    SHIPPED = "shipped"
    DISMISSED = "dismissed"
    ABANDONED = "abandoned"  # its Change was aborted


OPEN_PROPOSAL_STATUSES = (ProposalStatus.PROPOSED, ProposalStatus.SCHEDULED, ProposalStatus.IMPLEMENTING)


class Proposal(models.Model):
    """One scored improvement (the spec's enhancement_proposals)."""

    run = models.ForeignKey(ResearchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="proposals")
    day = models.DateField()
    origin = models.CharField(max_length=20)  # news | competitor | feedback
    title = models.CharField(max_length=300)
    what = models.TextField()
    why = models.TextField()
    how = models.TextField()
    files = models.JSONField(default=list, blank=True)
    risk_notes = models.TextField(blank=True)
    time_estimate = models.CharField(max_length=100, blank=True)
    success_criteria = models.TextField(blank=True)
    abort_criteria = models.TextField(blank=True)
    impact = models.PositiveSmallIntegerField()
    effort = models.PositiveSmallIntegerField()
    risk = models.PositiveSmallIntegerField()
    edge = models.PositiveSmallIntegerField()
    revenue = models.PositiveSmallIntegerField()
    score = models.FloatField()
    category = models.CharField(max_length=12, choices=Category.choices)
    scored_by = models.CharField(max_length=20)  # llm | heuristic
    analysis = models.JSONField(default=dict, blank=True, help_text="The six phases, or the heuristic's reasons.")
    sources = models.ManyToManyField(SourceItem, blank=True, related_name="proposals")
    status = models.CharField(max_length=12, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED)
    scheduled_for = models.DateField(null=True, blank=True)
    dismiss_reason = models.TextField(blank=True)
    decided_by = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    change = models.OneToOneField(
        "healing.Change", null=True, blank=True, on_delete=models.SET_NULL, related_name="proposal"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "-score"]
        indexes = [models.Index(fields=["day", "category"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.title


class WhatsNew(models.Model):
    """What users are told once an implemented proposal has shipped."""

    proposal = models.OneToOneField(Proposal, on_delete=models.CASCADE, related_name="whats_new")
    title = models.CharField(max_length=300)
    body = models.TextField()
    changelog_line = models.CharField(max_length=500)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-published_at"]
        verbose_name_plural = "what's new"

    def __str__(self) -> str:
        return self.title
