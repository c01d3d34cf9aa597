"""The Manager's Console: the site itself, projects and their keys, classification rules and the
audit log. Its other pages are the admin_* modules imported at the end of this one.

Ingested data (issues, occurrences, timelines) is read-only here. What the owner may change goes
through the same functions the rest of Kaizen uses, and every change lands in the audit log.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.template.response import TemplateResponse
from django.utils.html import format_html

from healing import projects
from healing.audit import audit_record
from healing.ingest import classify
from healing.models import AuditEntry, ClassificationRule, Project, ProjectKey
from kaizen_site.console import ReadOnlyMixin, form_changes, request_actor

admin.site.site_header = "Kaizen — Manager's Console"
admin.site.site_title = "Kaizen"
admin.site.index_title = "Manager's Console"


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
            detail = form_changes(form, obj)
            super().save_model(request, obj, form, change)
            if form.changed_data:
                audit_record(
                    actor=request_actor(request), action="project.update", target=f"project:{obj.slug}", detail=detail
                )
                # Ingest caches what it knows about a key (active, origins, quota) per process.
                transaction.on_commit(projects.forget_keys)
            return
        super().save_model(request, obj, form, change)
        issued = projects.key_issue(project=obj)
        audit_record(
            actor=request_actor(request),
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
            issued = projects.key_rotate(project=project, actor=request_actor(request))
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
        detail = form_changes(form, obj, created=not change)
        super().save_model(request, obj, form, change)
        action = "rule.update" if change else "rule.create"
        audit_record(actor=request_actor(request), action=action, target=f"rule:{obj.pk}", detail=detail)
        _rules_changed()

    def delete_model(self, request, obj: ClassificationRule) -> None:
        audit_record(
            actor=request_actor(request), action="rule.delete", target=f"rule:{obj.pk}", detail={"name": obj.name}
        )
        super().delete_model(request, obj)
        _rules_changed()

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            audit_record(
                actor=request_actor(request), action="rule.delete", target=f"rule:{rule.pk}", detail={"name": rule.name}
            )
        super().delete_queryset(request, queryset)
        _rules_changed()


# --- Audit log ------------------------------------------------------------------------------


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "target", "detail", "ip")
    list_filter = ("action", "actor")
    search_fields = ("target",)
    date_hierarchy = "created_at"
    show_full_result_count = False
