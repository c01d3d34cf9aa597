"""The console's issues and occurrences: what ingest stored, read-only except an issue's triage
(severity and stage), which the owner sets and the audit log records."""

import uuid

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from healing.audit import audit_record
from healing.console import incident, incident_actions
from healing.loop import triage
from healing.loop.stages import MOVES, issue_move
from healing.models import Issue, Occurrence, Stage
from kaizen_site.console import ReadOnlyMixin, form_changes, request_actor

OCCURRENCES_SHOWN = 50  # on an issue's page; the full list is in the occurrence admin
RECENT_ENVIRONMENTS_SCANNED = 10_000
ESTIMATE_COUNT_ABOVE = 100_000


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _occurrences_matching(term: str) -> Q:
    """An affected user's id or email (any case), or an event id."""
    match = Q(user_id=term) | Q(user_email__iexact=term)
    if (event_id := _as_uuid(term)) is not None:
        match |= Q(event_id=event_id)
    return match


# --- Issues ---------------------------------------------------------------------------------


class LatestOccurrencesFormSet(BaseInlineFormSet):
    def get_queryset(self):
        # An issue keeps up to KAIZEN_OCCURRENCES_PER_ISSUE reports; its page shows the newest.
        if not hasattr(self, "_queryset"):
            self._queryset = self.queryset.order_by("-received_at", "-id")[:OCCURRENCES_SHOWN]
        return self._queryset


class OccurrenceInline(ReadOnlyMixin, admin.TabularInline):
    model = Occurrence
    formset = LatestOccurrencesFormSet
    verbose_name_plural = f"latest {OCCURRENCES_SHOWN} occurrences"
    fields = ("received_at", "source", "user_id", "user_email", "environment", "release", "route", "summary")
    readonly_fields = fields
    show_change_link = True
    extra = 0

    def get_queryset(self, request):
        # A payload can be a megabyte (recordings, state snapshots): fifty of them are not read
        # to draw a table; the occurrence's own page shows it.
        return super().get_queryset(request).defer("payload")

    @admin.display(description="message")
    def summary(self, obj: Occurrence) -> str:
        return Truncator(obj.message).chars(120)


class IssueForm(forms.ModelForm):
    """The stage offered is one the issue may move to from where it is now (healing.loop.stages)."""

    class Meta:
        model = Issue
        fields = ("severity", "stage")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "stage" in self.fields:
            current = self.instance.stage
            offered = (current, *MOVES.get(current, ()))
            self.fields["stage"].choices = [(stage, Stage(stage).label) for stage in offered]


class EstimatedCountPaginator(Paginator):
    """The issue and occurrence tables grow: PostgreSQL counts rows by reading them all, so an
    unfiltered list pages by the planner's estimate once the table is big."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > ESTIMATE_COUNT_ABOVE:
                return row[0]
        return queryset.count()


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = (
        "severity", "type", "stage", "title", "project", "occurrence_count", "affected_users", "last_seen",
        "enqueue_state",
    )  # fmt: skip
    list_display_links = ("title",)
    list_filter = (
        "type", "severity", "stage", "project", ("first_seen", admin.DateFieldListFilter),
        ("last_seen", admin.DateFieldListFilter), "enqueue_state",
    )  # fmt: skip
    list_select_related = ("project",)
    search_fields = ("title",)  # and, in get_search_results, a user's id or email, an issue or event id
    search_help_text = "Words of the title, an affected user's id or email, or an issue or event id."
    # No date_hierarchy: its drill-down reads the distinct days of every issue; the date filters do.
    ordering = ("-last_seen",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    inlines = [OccurrenceInline]  # the timeline, stack, fix and logs: change_form_template, healing.console.incident
    change_form_template = "admin/healing/issue/change_form.html"
    change_list_template = "admin/healing/issue/change_list.html"  # links to Quick Fix and End users
    form = IssueForm
    actions = ["mark_not_a_problem"]
    fieldsets = (
        ("Triage", {"fields": ("severity", "stage", "resolved_at")}),
        (None, {"fields": ("title", "project", "type", "base_severity", "rule", "culprit")}),
        ("Counts", {"fields": ("first_seen", "last_seen", "occurrence_count", "affected_users", "times_reopened")}),
        (
            "Work queue",
            {
                "fields": (
                    "enqueue_state",
                    "enqueued_at",
                    "enqueue_attempts",
                    "stage_entered_at",
                    "stage_deadline",
                    "stage_attempts",
                )
            },
        ),  # fmt: skip
        ("Grouping", {"classes": ("collapse",), "fields": ("id", "fingerprint", "grouping")}),
    )
    readonly_fields = (
        "title", "project", "type", "base_severity", "rule", "culprit", "first_seen", "last_seen",
        "occurrence_count", "affected_users", "times_reopened", "resolved_at", "enqueue_state", "enqueued_at",
        "enqueue_attempts", "stage_entered_at", "stage_deadline", "stage_attempts", "id", "fingerprint", "grouping",
    )  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False  # issues come from reports

    @admin.action(description="Not a problem (a false positive): close without a fix")
    def mark_not_a_problem(self, request, queryset) -> None:
        actor = request_actor(request)
        for issue in queryset:
            triage.issue_not_a_problem(issue=issue, actor=actor)
        self.message_user(request, f"{queryset.count()} issue(s) marked as not a problem.")

    # --- The incident page ----------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        issue = self.get_object(request, object_id)
        if issue is not None:
            shown = incident.incident_context(issue)
            offered = incident_actions.actions_offered(issue=issue, fix=shown["fix"])
            extra_context = {**(extra_context or {}), **shown, "incident_actions": offered}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        act = path(
            "<path:object_id>/act/<slug:action>/",
            self.admin_site.admin_view(self.incident_act),
            name="healing_issue_act",
        )
        return [act, *super().get_urls()]

    def incident_act(self, request, object_id: str, action: str):
        """One of the incident page's buttons: POST only, CSRF-checked by the admin, permission-
        checked and audited by the action itself (healing.console.incident_actions)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in incident_actions.ACTIONS:
            raise Http404(f"No action {action}.")
        issue = self.get_object(request, object_id)
        if issue is None:
            raise Http404("No such issue.")
        if not self.has_change_permission(request, issue):
            raise PermissionDenied
        incident_actions.incident_act(request, issue=issue, action=action)
        return HttpResponseRedirect(reverse("admin:healing_issue_change", args=[issue.pk]))

    def has_delete_permission(self, request, obj=None) -> bool:
        # Its occurrences would go with it, and the next report would bring it back.
        return False

    def get_search_results(self, request, queryset, search_term):
        by_title, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term or any(ch.isspace() for ch in term):
            return by_title, may_have_duplicates
        # A semi-join on the occurrences rather than `occurrences__user_email` in search_fields:
        # that joins every occurrence into the list query and needs DISTINCT over all of it.
        matching = Q(pk__in=Occurrence.objects.filter(_occurrences_matching(term)).values("issue_id"))
        if (issue_id := _as_uuid(term)) is not None:
            matching |= Q(pk=issue_id)
        return by_title | queryset.filter(matching), may_have_duplicates

    def save_model(self, request, obj: Issue, form, change: bool) -> None:
        if not form.changed_data:
            return
        detail = form_changes(form, obj)
        fields = [name for name in form.changed_data if name != "stage"]
        if "severity" in fields:
            obj.severity_pinned = True  # the owner's call outranks the rules from now on
            fields.append("severity_pinned")
        # Only what the owner changed: a full save would write back the counters as they were
        # when the page was read, undoing what ingest added since.
        if fields:
            obj.save(update_fields=fields)
        if "stage" in form.changed_data:
            actor = request_actor(request)
            # Claimed on the stage the page showed: a pipeline move meanwhile wins, and the
            # owner's choice is then not applied (the page offers the moves from the new stage).
            issue_move(issue=obj, expected=form.initial["stage"], to=obj.stage, message="", actor=actor,
                       detail=f"Set by {actor} in the console.")  # fmt: skip
        audit_record(actor=request_actor(request), action="issue.update", target=f"issue:{obj.pk}", detail=detail)


# --- Occurrences ----------------------------------------------------------------------------


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [("native", "native"), ("sentry", "Sentry SDK")]

    def queryset(self, request, queryset):
        return queryset.filter(source=self.value()) if self.value() else queryset


class EnvironmentFilter(admin.SimpleListFilter):
    """The environments of recent reports: listing every distinct value ever sent would read the
    whole table on each page view."""

    title = "environment"
    parameter_name = "environment"

    def lookups(self, request, model_admin):
        recent = Occurrence.objects.order_by("-id").values_list("environment", flat=True)[:RECENT_ENVIRONMENTS_SCANNED]
        found = {env for env in recent if env}
        if self.value():
            found.add(self.value())
        return [(env, env) for env in sorted(found)]

    def queryset(self, request, queryset):
        return queryset.filter(environment=self.value()) if self.value() else queryset


@admin.register(Occurrence)
class OccurrenceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("event_id", "received_at", "issue", "source", "environment", "user_id", "user_email", "release")
    list_filter = (SourceFilter, EnvironmentFilter)
    list_select_related = ("issue",)
    search_fields = ("event_id", "user_id", "user_email")  # exact matches, see get_search_results
    search_help_text = "An event id, or an affected user's id or email."
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = (
        "event_id", "issue", "source", "received_at", "timestamp", "user_id", "user_email", "session_id", "url",
        "route", "release", "environment", "message", "report",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload")

    def get_search_results(self, request, queryset, search_term):
        # Exact matches only: a substring search would scan every stored report.
        term = search_term.strip()
        return (queryset.filter(_occurrences_matching(term)) if term else queryset), False

    @admin.display(description="report as received")
    def report(self, obj: Occurrence) -> str:
        return format_html("<pre>{}</pre>", incident.payload_display(dict(obj.payload)))
