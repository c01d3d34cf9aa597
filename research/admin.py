"""The console's "Enhancements": today's proposals in two sections (Implement now / Schedule for
later / Dismiss with reason), their history, and the research sources, keywords and capabilities
the owner edits. Actions go through research.implement, which audits them."""

from datetime import date, timedelta

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from kaizen_site.console import ReadOnlyMixin, request_actor

from .implement import ProposalError, proposal_dismiss, proposal_implement, proposal_schedule
from .models import (
    Capability,
    Category,
    CompetitorFeature,
    FeedbackTheme,
    Keyword,
    Proposal,
    ResearchRun,
    Source,
    SourceFetch,
    WhatsNew,
)
from .schedule import owner_today


@admin.register(Proposal)
class ProposalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The changelist is the history; `enhancements/` is today's decision page."""

    list_display = ("day", "title", "category", "score", "status", "scored_by", "change_link")
    list_filter = ("status", "category", "origin", "scored_by", "day")
    search_fields = ("title", "what", "why")
    date_hierarchy = "day"
    readonly_fields = [f.name for f in Proposal._meta.fields] + ["source_links"]

    @admin.display(description="change")
    def change_link(self, proposal: Proposal) -> str:
        if not proposal.change_id:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:healing_change_change", args=[proposal.change_id]),
                           proposal.change.key)  # fmt: skip

    @admin.display(description="sources")
    def source_links(self, proposal: Proposal) -> str:
        return format_html_join(
            ", ", '<a href="{}" rel="noreferrer">{}</a>', ((i.url, i.title) for i in proposal.sources.all())
        )

    def get_urls(self):
        own = [
            path("enhancements/", self.admin_site.admin_view(self.enhancements_view), name="research_enhancements"),
            path(
                "enhancements/<int:pk>/<str:act>/",
                self.admin_site.admin_view(self.decide_view),
                name="research_proposal_decide",
            ),
        ]
        return own + super().get_urls()

    def enhancements_view(self, request: HttpRequest) -> HttpResponse:
        day = owner_today()
        today = Proposal.objects.filter(day=day).prefetch_related("sources").select_related("change")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Enhancements for {day:%A %d %B %Y}",
            "day": day,
            "sections": [
                ("High impact", [p for p in today if p.category == Category.HIGH_IMPACT]),
                ("Quick fixes", [p for p in today if p.category == Category.QUICK_FIX]),
            ],
            "tomorrow": (day + timedelta(days=1)).isoformat(),
            "history": Proposal.objects.exclude(day=day).exclude(decided_at=None).order_by("-decided_at")[:30],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/research/enhancements.html", context)

    def decide_view(self, request: HttpRequest, pk: int, act: str) -> HttpResponse:
        back = HttpResponseRedirect(reverse("admin:research_enhancements"))
        if request.method != "POST":
            return back
        if not request.user.has_perm("research.change_proposal"):
            self.message_user(request, "You may view proposals but not decide on them.", messages.ERROR)
            return back
        proposal = get_object_or_404(Proposal, pk=pk)
        actor = request_actor(request)
        try:
            if act == "implement":
                change = proposal_implement(proposal=proposal, actor=actor)
                self.message_user(request, f"{change.key} opened for “{proposal.title}”.", messages.SUCCESS)
            elif act == "schedule":
                on = date.fromisoformat(request.POST.get("on", ""))
                proposal_schedule(proposal=proposal, actor=actor, on=on)
                self.message_user(request, f"“{proposal.title}” scheduled for {on}.", messages.SUCCESS)
            elif act == "dismiss":
                proposal_dismiss(proposal=proposal, actor=actor, reason=request.POST.get("reason", ""))
                self.message_user(request, f"“{proposal.title}” dismissed.", messages.SUCCESS)
            else:
                self.message_user(request, f"Unknown action {act!r}.", messages.ERROR)
        except ValueError:
            self.message_user(request, "Give the day as YYYY-MM-DD.", messages.ERROR)
        except (ProposalError, ValidationError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return back


class SourceFetchInline(ReadOnlyMixin, admin.TabularInline):
    model = SourceFetch
    fields = ("source", "outcome", "items", "new", "relevant", "duration_ms", "error")
    readonly_fields = fields
    extra = 0


@admin.register(ResearchRun)
class ResearchRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("day", "trigger", "started_at", "finished_at", "summary")
    inlines = [SourceFetchInline]


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "enabled", "last_success_at", "consecutive_errors", "next_attempt_at", "last_error")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "url")
    readonly_fields = ("etag", "last_modified", "last_fetched_at", "last_success_at", "consecutive_errors",
                       "next_attempt_at", "last_error", "snapshot")  # fmt: skip
    actions = ("reenable",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a bare host means https

    def save_model(self, request: HttpRequest, obj: Source, form, change: bool) -> None:
        # A new address is a new resource: the old validators would earn a wrong 304.
        if change and "url" in form.changed_data:
            obj.etag, obj.last_modified = "", ""
        super().save_model(request, obj, form, change)

    @admin.action(description="Re-enable and clear the error count")
    def reenable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        n = queryset.update(enabled=True, disabled_reason="", consecutive_errors=0, next_attempt_at=None)
        self.message_user(request, f"{n} source(s) re-enabled.", messages.SUCCESS)


@admin.register(Keyword)
class KeywordAdmin(admin.ModelAdmin):
    search_fields = ("word",)


@admin.register(Capability)
class CapabilityAdmin(admin.ModelAdmin):
    list_display = ("name", "aliases")
    search_fields = ("name", "aliases")


@admin.register(CompetitorFeature)
class CompetitorFeatureAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("found_at", "source", "feature", "gap", "matched")
    list_filter = ("gap", "source")


@admin.register(FeedbackTheme)
class FeedbackThemeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("label", "reports", "users", "last_seen", "rank", "run")


@admin.register(WhatsNew)
class WhatsNewAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("published_at", "title", "changelog_line")
