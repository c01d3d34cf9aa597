"""The Manager's Console: the owner's view of projects, issues, classification rules and the audit log.

Ingested data (issues, occurrences, timelines) is read-only here. What the owner may change goes
through the same functions the rest of Kaizen uses, and every change lands in the audit log.
"""

import json
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator

from . import classify, projects
from .audit import audit_record
from .models import (
    AuditEntry,
    ClassificationRule,
    Issue,
    IssueEvent,
    Occurrence,
    Project,
    ProjectKey,
    Stage,
)

admin.site.site_header = "Kaizen — Manager's Console"
admin.site.site_title = "Kaizen"
admin.site.index_title = "Manager's Console"

OCCURRENCES_SHOWN = 50  # on an issue's page; the full list is in the occurrence admin
RECENT_ENVIRONMENTS_SCANNED = 10_000
ESTIMATE_COUNT_ABOVE = 100_000


def _actor(request) -> str:
    return request.user.get_username()


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool | list | dict) else str(value)


def _changes(form: forms.ModelForm, obj: Any, *, created: bool = False) -> dict[str, dict[str, Any]]:
    """Before → after of what the form changed (every field, for a new row), for the audit log.

    Call it before saving: `form.initial` holds the row as it was, `obj` the validated new values.
    """
    names = list(form.fields) if created else form.changed_data
    after = {name: _jsonable(getattr(obj, obj._meta.get_field(name).attname)) for name in names}
    before = {} if created else {name: _jsonable(form.initial.get(name)) for name in names}
    return {"before": before, "after": after}


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


class ReadOnlyMixin:
    """Rows written by Kaizen itself: the console shows them and nothing more."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Projects and keys ------------------------------------------------------------------------


class ProjectKeyInline(ReadOnlyMixin, admin.TabularInline):
    model = ProjectKey
    # The public key is public (it sits in every browser); the secret's hash is never shown.
    fields = ("public_key", "is_active", "created_at", "revoked_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    extra = 0


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ("name", "slug", "allowed_origins", "rate_limit_per_minute", "is_active")

    def clean_allowed_origins(self) -> Any:
        # An emptied box means "no browser origins"; Project.clean checks the shape.
        origins = self.cleaned_data.get("allowed_origins")
        return [] if origins is None else origins


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectForm
    list_display = ("name", "slug", "is_active", "rate_limit_per_minute", "active_key", "issue_count")
    list_filter = ("is_active",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "allowed_origins", "rate_limit_per_minute", "is_active", "created_at")
    readonly_fields = ("created_at",)
    inlines = [ProjectKeyInline]
    actions = ["rotate_key"]

    def get_queryset(self, request):
        active = ProjectKey.objects.filter(project=OuterRef("pk"), is_active=True).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(active_key_public=Subquery(active.values("public_key")[:1]), issue_total=Count("issues"))
        )

    @admin.display(description="active key")
    def active_key(self, obj: Project) -> str | None:
        return f"{obj.active_key_public[:8]}…" if obj.active_key_public else None

    @admin.display(description="issues", ordering="issue_total")
    def issue_count(self, obj: Project) -> int:
        return obj.issue_total

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting cascades to every issue and occurrence (the confirmation page alone would load
        # them all) and erases the history; a project is switched off with "active" instead.
        return False

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        if change:
            detail = _changes(form, obj)
            super().save_model(request, obj, form, change)
            if form.changed_data:
                audit_record(
                    actor=_actor(request), action="project.update", target=f"project:{obj.slug}", detail=detail
                )
                # Ingest caches what it knows about a key (active, origins, quota) per process.
                transaction.on_commit(projects.forget_keys)
            return
        super().save_model(request, obj, form, change)
        issued = projects.key_issue(project=obj)
        audit_record(
            actor=_actor(request),
            action="project.create",
            target=f"project:{obj.slug}",
            detail={"key": issued.key.public_key[:8]},
        )
        self._show_issued_key(request, obj, issued, "created")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            key = obj.keys.filter(is_active=True).order_by("-created_at").first()
            context["dsn"] = _dsn(request, key) if key else None
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    @admin.action(description="Rotate key (revokes the active key at once)")
    def rotate_key(self, request, queryset):
        if request.POST.get("post") != "yes":
            # A revoked key is refused at once, so every client still sending it stops reporting
            # until the new one is deployed: ask first.
            context = {
                **self.admin_site.each_context(request),
                "title": "Rotate project keys?",
                "opts": self.opts,
                "projects": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/healing/project/rotate_key_confirmation.html", context)
        for project in queryset:
            issued = projects.key_rotate(project=project, actor=_actor(request))
            self._show_issued_key(request, project, issued, "key rotated")
        return None

    def _show_issued_key(self, request, project: Project, issued: projects.IssuedKey, what: str) -> None:
        messages.success(
            request,
            format_html(
                "{} — {}. Public key <code>{}</code> · DSN <code>{}</code> · secret <code>{}</code>. "
                "Copy the secret now: only its hash is kept, it will not be shown again.",
                project.name,
                what,
                issued.key.public_key,
                _dsn(request, issued.key),
                issued.secret,
            ),
        )


def _dsn(request, key: ProjectKey) -> str:
    """The Sentry-style DSN for a key, on the host the owner reached the console at."""
    return f"{request.scheme}://{key.public_key}@{request.get_host()}/{key.project_id}"


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


class TimelineInline(ReadOnlyMixin, admin.TabularInline):
    model = IssueEvent
    verbose_name = "timeline event"
    verbose_name_plural = "timeline"
    fields = ("created_at", "stage", "message", "detail")
    readonly_fields = fields
    extra = 0


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = (
        "severity", "type", "stage", "title", "project", "occurrence_count", "affected_users", "last_seen",
        "enqueue_state",
    )  # fmt: skip
    list_display_links = ("title",)
    list_filter = ("type", "severity", "stage", "project", "enqueue_state")
    list_select_related = ("project",)
    search_fields = ("title",)  # and, in get_search_results, a user's id or email, an issue or event id
    search_help_text = "Words of the title, an affected user's id or email, or an issue or event id."
    date_hierarchy = "last_seen"
    ordering = ("-last_seen",)
    show_full_result_count = False
    inlines = [TimelineInline, OccurrenceInline]
    fieldsets = (
        ("Triage", {"fields": ("severity", "stage", "resolved_at")}),
        (None, {"fields": ("title", "project", "type", "base_severity", "rule", "culprit")}),
        ("Counts", {"fields": ("first_seen", "last_seen", "occurrence_count", "affected_users", "times_reopened")}),
        ("Work queue", {"fields": ("enqueue_state", "enqueued_at", "enqueue_attempts")}),
        ("Grouping", {"classes": ("collapse",), "fields": ("id", "fingerprint", "grouping")}),
    )
    readonly_fields = (
        "title", "project", "type", "base_severity", "rule", "culprit", "first_seen", "last_seen",
        "occurrence_count", "affected_users", "times_reopened", "resolved_at", "enqueue_state", "enqueued_at",
        "enqueue_attempts", "id", "fingerprint", "grouping",
    )  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False  # issues come from reports

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
        detail = _changes(form, obj)
        fields = list(form.changed_data)
        if "stage" in fields:
            obj.resolved_at = timezone.now() if obj.stage == Stage.RESOLVED else None
            fields.append("resolved_at")
        if "severity" in fields:
            obj.severity_pinned = True  # the owner's call outranks the rules from now on
            fields.append("severity_pinned")
        # Only what the owner changed: a full save would write back the counters as they were
        # when the page was read, undoing what ingest added since.
        obj.save(update_fields=fields)
        if "stage" in form.changed_data:
            IssueEvent.objects.create(
                issue=obj, stage=obj.stage, message="", detail=f"Set by {_actor(request)} in the console."
            )
        audit_record(actor=_actor(request), action="issue.update", target=f"issue:{obj.pk}", detail=detail)


# --- Classification rules -------------------------------------------------------------------


def _rules_changed() -> None:
    # After commit: a reload between now and the commit would cache the old rows again. Other
    # processes reload on their own within classify.RULES_CACHE_SECONDS.
    transaction.on_commit(classify.forget_rules)


@admin.register(ClassificationRule)
class ClassificationRuleAdmin(admin.ModelAdmin):
    list_display = (
        "priority", "name", "enabled", "project", "match_type", "result_type", "severity", "escalate_users",
        "escalate_occurrences",
    )  # fmt: skip
    list_display_links = ("name",)
    list_editable = ("priority", "enabled")
    list_filter = ("enabled", "severity", "result_type", "project")
    list_select_related = ("project",)
    search_fields = ("name", "description")
    fieldsets = (
        (None, {"fields": ("name", "priority", "enabled", "project", "description")}),
        (
            "When (every filled condition must hold)",
            {"fields": ("match_type", "message_regex", "route_regex", "exception_regex", "status_min", "status_max")},
        ),
        ("Then", {"fields": ("result_type", "severity", "escalate_users", "escalate_occurrences")}),
    )

    def save_model(self, request, obj: ClassificationRule, form, change: bool) -> None:
        detail = _changes(form, obj, created=not change)
        super().save_model(request, obj, form, change)
        action = "rule.update" if change else "rule.create"
        audit_record(actor=_actor(request), action=action, target=f"rule:{obj.pk}", detail=detail)
        _rules_changed()

    def delete_model(self, request, obj: ClassificationRule) -> None:
        audit_record(actor=_actor(request), action="rule.delete", target=f"rule:{obj.pk}", detail={"name": obj.name})
        super().delete_model(request, obj)
        _rules_changed()

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            audit_record(
                actor=_actor(request), action="rule.delete", target=f"rule:{rule.pk}", detail={"name": rule.name}
            )
        super().delete_queryset(request, queryset)
        _rules_changed()


# --- Audit log ------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "target", "detail")
    list_filter = ("action", "actor")
    search_fields = ("target",)
    date_hierarchy = "created_at"
    show_full_result_count = False


# --- Occurrences ----------------------------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """The occurrence table is the one that grows: PostgreSQL counts rows by reading them all, so
    an unfiltered list pages by the planner's estimate once the table is big."""

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
        payload = dict(obj.payload)
        if payload.get("recording"):
            payload["recording"] = f"<{len(payload['recording'])} characters of base64 recording>"
        return format_html("<pre>{}</pre>", json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False))


from . import admin_changes  # noqa: E402, F401 - Kaizen tickets and components (after the helpers it reuses)

from . import admin_patterns  # noqa: E402, F401 - patterns, remediation hooks and runs, incidents  # isort: skip
