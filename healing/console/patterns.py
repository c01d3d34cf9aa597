"""The console's pattern library and remediation: error patterns (with their record and a
re-enable action), the owner's remediation webhooks (the secret is write-only), and the read-only
records of every remediation run and every incident learned from."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from healing.audit import audit_record
from healing.loop import patterns
from healing.models import ErrorPattern, Incident, RemediationHook, RemediationOutcome, RemediationRun
from healing.remediation import RemediationPlanError, remediation_plan_validate, remediation_undo
from healing.remediation.json_schema import SchemaError, schema_parse
from kaizen_site.console import ReadOnlyMixin, form_changes, request_actor

SECRET_SHOWN_AS = "(set)"  # noqa: S105 - a placeholder, not a secret

# --- Error patterns -------------------------------------------------------------------------------


class ErrorPatternForm(forms.ModelForm):
    class Meta:
        model = ErrorPattern
        fields = (
            "name", "project", "description", "enabled", "match_type", "exception_regex", "message_regex",
            "route_regex", "fingerprint", "example_text", "remediation", "confidence_threshold",
        )  # fmt: skip

    def clean_remediation(self):
        plan = self.cleaned_data.get("remediation") or []
        try:
            remediation_plan_validate(plan, project=self.cleaned_data.get("project"))
        except RemediationPlanError as exc:
            raise ValidationError(exc.problems) from exc
        return plan


@admin.register(ErrorPattern)
class ErrorPatternAdmin(admin.ModelAdmin):
    form = ErrorPatternForm
    list_display = (
        "name", "project", "match_type", "enabled", "auto_disabled", "hits", "successes", "failures", "success_rate",
        "last_used_at",
    )  # fmt: skip
    list_filter = ("enabled", "auto_disabled", "match_type", "project")
    list_select_related = ("project",)
    search_fields = ("name", "description", "example_text")
    actions = ["reenable"]
    fieldsets = (
        (None, {"fields": ("name", "project", "description", "enabled")}),
        (
            "When (every filled condition must hold)",
            {"fields": ("match_type", "exception_regex", "message_regex", "route_regex")},
        ),
        ("Evidence", {"fields": ("fingerprint", "example_text", "confidence_threshold")}),
        ("Then", {"fields": ("remediation",)}),
        (
            "Record",
            {
                "fields": (
                    "hits",
                    "successes",
                    "failures",
                    "last_used_at",
                    "auto_disabled",
                    "disabled_reason",
                    "created_by",
                    "created_at",
                    "updated_at",
                )
            },
        ),  # fmt: skip
    )
    readonly_fields = (
        "hits", "successes", "failures", "last_used_at", "auto_disabled", "disabled_reason", "created_by",
        "created_at", "updated_at",
    )  # fmt: skip

    @admin.display(description="success rate")
    def success_rate(self, obj: ErrorPattern) -> str:
        outcomes = obj.successes + obj.failures
        return f"{obj.successes / outcomes:.0%}" if outcomes else "—"

    def save_model(self, request, obj: ErrorPattern, form, change: bool) -> None:
        detail = form_changes(form, obj, created=not change)
        # Ticking "enabled" on a pattern Kaizen switched off is the re-enable action: a clean slate.
        reenabling = change and "enabled" in form.changed_data and obj.enabled and obj.auto_disabled
        if not change:
            obj.created_by = request_actor(request)
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        target = f"pattern:{obj.pk}"
        audit_record(actor=request_actor(request), action=f"pattern.{'update' if change else 'create'}", target=target,
                     detail=detail)  # fmt: skip
        if reenabling:
            patterns.pattern_enable(pattern=obj, actor=request_actor(request))
        patterns.patterns_changed()

    def delete_model(self, request, obj: ErrorPattern) -> None:
        audit_record(actor=request_actor(request), action="pattern.delete", target=f"pattern:{obj.pk}",
                     detail={"name": obj.name})  # fmt: skip
        super().delete_model(request, obj)
        patterns.patterns_changed()

    def delete_queryset(self, request, queryset) -> None:
        for pattern in queryset:
            audit_record(actor=request_actor(request), action="pattern.delete", target=f"pattern:{pattern.pk}",
                         detail={"name": pattern.name})  # fmt: skip
        super().delete_queryset(request, queryset)
        patterns.patterns_changed()

    @admin.action(description="Re-enable (its success and failure counts start again)")
    def reenable(self, request, queryset) -> None:
        names = [patterns.pattern_enable(pattern=pattern, actor=request_actor(request)).name for pattern in queryset]
        messages.success(request, f"Re-enabled: {', '.join(names)}.")


# --- Remediation webhooks -----------------------------------------------------------------------


class RemediationHookForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="Where Kaizen POSTs the signed request.")
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs every request (X-Kaizen-Signature). Write-only: never shown again; leave empty to keep it.",
    )

    class Meta:
        model = RemediationHook
        fields = ("name", "project", "description", "url", "secret", "param_schema", "timeout_seconds", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Not even as the field's initial value: it would be in the page, and "changed" on every save.
        self.initial.pop("secret", None)

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if not secret:
            if self.instance.pk:
                return self.instance.secret
            raise ValidationError("Required: every request to the hook is signed with it.")
        if len(secret) < 16:
            raise ValidationError("At least 16 characters: it is all that proves a request came from Kaizen.")
        return secret

    def clean_param_schema(self):
        schema = self.cleaned_data.get("param_schema") or {}
        try:
            schema_parse(schema)
        except SchemaError as exc:
            raise ValidationError(f"Not a schema Kaizen can check: {exc}") from exc
        return schema


@admin.register(RemediationHook)
class RemediationHookAdmin(admin.ModelAdmin):
    form = RemediationHookForm
    list_display = ("name", "project", "url", "timeout_seconds", "enabled", "updated_at")
    list_filter = ("enabled", "project")
    list_select_related = ("project",)
    search_fields = ("name", "url", "description")

    def save_model(self, request, obj: RemediationHook, form, change: bool) -> None:
        detail = form_changes(form, obj, created=not change)
        for side in ("before", "after"):
            if "secret" in detail[side]:
                detail[side]["secret"] = SECRET_SHOWN_AS  # that it changed, never what it is
        super().save_model(request, obj, form, change)
        if change and not form.changed_data:
            return
        audit_record(actor=request_actor(request), action=f"hook.{'update' if change else 'create'}",
                     target=f"hook:{obj.pk}", detail=detail)  # fmt: skip

    def delete_model(self, request, obj: RemediationHook) -> None:
        audit_record(
            actor=request_actor(request), action="hook.delete", target=f"hook:{obj.pk}", detail={"name": obj.name}
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for hook in queryset:
            audit_record(actor=request_actor(request), action="hook.delete", target=f"hook:{hook.pk}",
                         detail={"name": hook.name})  # fmt: skip
        super().delete_queryset(request, queryset)


# --- Records --------------------------------------------------------------------------------------


def _json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


@admin.register(RemediationRun)
class RemediationRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "action", "risk", "outcome", "summary", "issue", "change", "user_id", "actor")
    list_filter = ("outcome", "action", "risk")
    list_select_related = ("issue", "change")
    search_fields = ("user_id",)
    date_hierarchy = "started_at"
    show_full_result_count = False
    actions = ["undo"]
    fields = (
        "action", "risk", "outcome", "detail", "error", "params_shown", "result_shown", "undo_data_shown",
        "undone_at", "undo_of", "plan_run", "step", "project", "issue", "change", "user_id", "actor", "started_at",
        "finished_at",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="detail")
    def summary(self, obj: RemediationRun) -> str:
        return Truncator(obj.error or obj.detail).chars(100)

    @admin.display(description="params")
    def params_shown(self, obj: RemediationRun) -> str:
        return _json(obj.params)

    @admin.display(description="result")
    def result_shown(self, obj: RemediationRun) -> str:
        return _json(obj.result)

    @admin.display(description="undo data")
    def undo_data_shown(self, obj: RemediationRun) -> str:
        return _json(obj.undo_data) if obj.undo_data is not None else "— (nothing to undo)"

    @admin.action(description="Undo the selected steps")
    def undo(self, request, queryset) -> None:
        for run in queryset.filter(undo_of__isnull=True).order_by("-started_at", "-id"):
            undo = remediation_undo(run=run, actor=request_actor(request))
            if undo is None:
                messages.warning(request, f"{run}: nothing to undo, or undone already.")
            elif undo.outcome == RemediationOutcome.OK:
                messages.success(request, f"{run.action} undone: {undo.detail}")
            else:
                messages.error(request, f"{run.action}: the undo failed: {undo.error}")


@admin.register(Incident)
class IncidentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "outcome", "short_symptoms", "issue", "change", "pattern")
    list_filter = ("outcome",)
    list_select_related = ("issue", "change", "pattern")
    search_fields = ("symptoms", "root_cause")
    date_hierarchy = "created_at"
    fields = (
        "outcome", "symptoms", "root_cause", "fix_plan_shown", "fix_summary", "issue", "change", "pattern",
        "created_at", "updated_at",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="symptoms")
    def short_symptoms(self, obj: Incident) -> str:
        return Truncator(obj.symptoms).chars(100)

    @admin.display(description="fix plan")
    def fix_plan_shown(self, obj: Incident) -> str:
        return _json(obj.fix_plan)
