"""The console's Kaizen tickets (Changes) and the components they touch.

A ticket's status moves only through `changes.change_transition` (the "Move to" field on its page,
or the list's actions): an illegal or stale move is shown as an error and applies nothing. The
promotion log is read-only here, as everywhere.
"""

import json
import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from healing.audit import audit_record
from healing.changes import components, patch_executor
from healing.changes import lifecycle as changes
from healing.loop import pipeline
from healing.models import CHANGE_KEY_PREFIX, Change, ChangeStatus, Component, PatchState, PromotionLogEntry
from healing.remediation import change_steps_undo
from kaizen_site.console import ReadOnlyMixin, request_actor

FAILED_SAVE = "_kaizen_change_failed"  # request attribute: the save showed an error, not a success


# --- Components -------------------------------------------------------------------------------


class ComponentForm(forms.ModelForm):
    class Meta:
        model = Component
        fields = ("id", "name", "tier", "owner", "slo", "rollback_plan")

    def clean(self):
        cleaned = super().clean()
        data = {name: cleaned.get(name, getattr(self.instance, name)) for name in self.Meta.fields}
        data["slo"] = data["slo"] or {}
        try:
            self.spec = components.component_spec_parse(data, source="component")
        except components.ComponentSpecError as exc:
            field = exc.field.split(".")[0]
            raise ValidationError({field if field in self.fields else NON_FIELD_ERRORS: str(exc)}) from exc
        return cleaned


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    form = ComponentForm
    list_display = ("id", "name", "tier", "owner", "slo_targets")
    list_filter = ("tier",)
    search_fields = ("id", "name", "owner")

    def get_readonly_fields(self, request, obj=None):
        return ("id",) if obj is not None else ()

    @admin.display(description="SLO")
    def slo_targets(self, obj: Component) -> str:
        return ", ".join(f"{metric}={target:g}" for metric, target in sorted(obj.slo.items()))

    def save_model(self, request, obj: Component, form, change: bool) -> None:
        saved, _ = components.component_save(spec=form.spec, actor=request_actor(request))
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at

    def delete_model(self, request, obj: Component) -> None:
        audit_record(actor=request_actor(request), action="component.delete", target=f"component:{obj.pk}")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for component in queryset:
            audit_record(actor=request_actor(request), action="component.delete", target=f"component:{component.pk}")
        super().delete_queryset(request, queryset)


# --- Changes ----------------------------------------------------------------------------------


class PromotionLogInline(ReadOnlyMixin, admin.TabularInline):
    model = PromotionLogEntry
    verbose_name = "promotion"
    verbose_name_plural = "promotion log"
    fields = ("created_at", "actor", "from_status", "to_status", "why")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0


class ChangeActionForm(helpers.ActionForm):
    why = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"placeholder": "why (kept in the promotion log)", "size": 40})
    )


class ChangeForm(forms.ModelForm):
    move_to = forms.ChoiceField(required=False, label="Move to")
    why = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="Kept in the promotion log."
    )

    class Meta:
        model = Change
        fields = changes.EDITABLE_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        status = self.instance.status if self.instance.pk else None
        # Offered: the legal moves from the status as it is now. A page left open while the change
        # moved posts a choice that is no longer offered, and gets a form error.
        moves = changes.TRANSITIONS.get(status, ()) if status else ()
        stay = f"— stay {status}" if moves else f"— {status} is final" if status else ""
        self.fields["move_to"].choices = [("", stay), *((to, ChangeStatus(to).label) for to in moves)]

    def clean_plan(self):
        plan = self.cleaned_data.get("plan")
        try:
            return changes.plan_clean(plan or [])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["plan"]) from exc


def _move_action(to: str):
    def move(modeladmin, request, queryset):
        modeladmin.move(request, queryset, to)

    move.__name__ = f"move_to_{to}"
    verb = "Abort" if to == ChangeStatus.ABORTED else f"Move to {ChangeStatus(to).label.lower()}"
    return admin.action(description=verb)(move)


def _undo_applied(request, change: Change, *, why: str) -> None:
    """An aborted Change leaves nothing of itself applied: its remediation steps are undone."""
    report = change_steps_undo(change=change, actor=request_actor(request), why=why or "Aborted in the console.")
    messages.info(request, f"{change.key}: {report.summary}")


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):
    form = ChangeForm
    action_form = ChangeActionForm
    list_display = ("display_id", "title", "status", "component", "severity", "issue", "updated_at")
    list_display_links = ("display_id", "title")
    list_filter = ("status", "severity", "component", "patch_state")
    list_select_related = ("component", "issue")
    search_fields = ("title",)  # and, in get_search_results, a ticket id such as KAIZ-012
    search_help_text = "Words of the title, or a ticket id (KAIZ-012)."
    ordering = ("-number",)
    raw_id_fields = ("issue",)
    inlines = [PromotionLogInline]
    actions = [
        *(_move_action(to) for to in ChangeStatus.values if to != ChangeStatus.DRAFT), "approve_patch",
        "approve_held_steps",
    ]  # fmt: skip
    readonly_fields = (
        "display_id", "status", "patch_status", "patch_build_id", "patch_error", "patch_submitted_at",
        "patch_approved_by", "patch_approved_at", "scorecard_table", "created_by", "created_at", "updated_at",
        "scheduled_for",
    )  # fmt: skip

    def get_fieldsets(self, request, obj=None):
        described = ("title", "severity", "owner", "component", "issue", "flag_key")
        intent = ("objective", "success_criteria", "abort_criteria", "rollback_plan", "plan")
        patch = ("patch_summary", "patch_diff", "patch_status", "patch_build_id", "patch_error",
                 "patch_submitted_at", "patch_approved_by", "patch_approved_at")  # fmt: skip
        if obj is None:
            return ((None, {"fields": described}), ("Intent", {"fields": intent}), ("Patch", {"fields": patch[:2]}),
                    ("Why", {"fields": ("why",)}))  # fmt: skip
        return (
            ("Status", {"fields": ("display_id", "status", "move_to", "why")}),
            (None, {"fields": described}),
            ("Intent", {"fields": intent}),
            ("Patch", {"fields": patch}),
            ("Scorecard", {"fields": ("scorecard_table",)}),
            ("Record", {"fields": ("created_by", "created_at", "updated_at", "scheduled_for")}),
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None and not changes.TRANSITIONS[obj.status]:
            fields += changes.EDITABLE_FIELDS
        elif obj is not None and obj.status not in changes.CONTENT_EDITABLE_STATUSES:
            fields += changes.CONTENT_FIELDS
        return fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a ticket is aborted, not deleted: its promotion log is the history

    def get_search_results(self, request, queryset, search_term):
        by_title, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = re.fullmatch(rf"(?:{CHANGE_KEY_PREFIX})?0*(\d+)", search_term.strip(), flags=re.IGNORECASE)
        if match:
            return by_title | queryset.filter(number=int(match[1])), may_have_duplicates
        return by_title, may_have_duplicates

    # --- Display --------------------------------------------------------------------------------

    @admin.display(description="id", ordering="number")
    def display_id(self, obj: Change) -> str:
        return obj.key if obj.number else "—"

    @admin.display(description="patch")
    def patch_status(self, obj: Change) -> str:
        if obj.patch_state == PatchState.AWAITING_APPROVAL and not patch_executor.patch_executor_configured():
            return format_html("<strong>{}</strong>", patch_executor.NOT_CONFIGURED)
        return obj.get_patch_state_display()

    @admin.display(description="scorecard")
    def scorecard_table(self, obj: Change) -> str:
        if not obj.scorecard:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.scorecard, indent=2, sort_keys=True, ensure_ascii=False))

    # --- Saving -----------------------------------------------------------------------------------

    def save_model(self, request, obj: Change, form, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = changes.change_create(
                **{name: data.get(name) or "" for name in ("title", "severity", "owner", "objective",
                                                           "success_criteria", "abort_criteria", "rollback_plan",
                                                           "flag_key")},
                component=data.get("component"),
                issue=data.get("issue"),
                plan=data.get("plan") or [],
                patch=changes.PatchSpec(summary=data.get("patch_summary") or "", diff=data.get("patch_diff") or ""),
                actor=request_actor(request),
                why=data.get("why") or "",
            )  # fmt: skip
            # The admin goes on with the instance it built (log entry, redirect): make it the row.
            for model_field in Change._meta.concrete_fields:
                setattr(obj, model_field.attname, getattr(created, model_field.attname))
            obj._state.adding, obj._state.db = False, created._state.db
            return
        edits = {name: data[name] for name in form.changed_data if name in changes.EDITABLE_FIELDS}
        try:
            with transaction.atomic():  # the edits and the move are kept together or not at all
                if edits:
                    changes.change_update(change=obj, fields=edits, actor=request_actor(request))
                if data.get("move_to"):
                    changes.change_transition(
                        change=obj, to=data["move_to"], actor=request_actor(request), why=data["why"]
                    )
        except (changes.ChangeError, ValidationError) as exc:
            setattr(request, FAILED_SAVE, True)
            problem = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            messages.error(request, f"Nothing was saved: {problem}")
            return
        if data.get("move_to") == ChangeStatus.ABORTED:
            _undo_applied(request, obj, why=data["why"])

    def response_change(self, request, obj):
        if getattr(request, FAILED_SAVE, False):
            return HttpResponseRedirect(request.path)  # back to the page, with the error, no "changed" banner
        return super().response_change(request, obj)

    # --- Actions ----------------------------------------------------------------------------------

    def move(self, request, queryset, to: str) -> None:
        why = request.POST.get("why", "")
        moved = []
        for change in queryset.order_by("number"):
            try:
                changes.change_transition(change=change, to=to, actor=request_actor(request), why=why)
                moved.append(change.key)
            except changes.ChangeTransitionError as exc:
                messages.error(request, str(exc))
                continue
            if to == ChangeStatus.ABORTED:
                _undo_applied(request, change, why=why)
        if moved:
            messages.success(request, f"{', '.join(moved)} → {to}.")

    @admin.action(description="Approve held steps (the promotion policy did not let them run unattended)")
    def approve_held_steps(self, request, queryset) -> None:
        for change in queryset.order_by("number"):
            try:
                change = pipeline.change_held_approve(change=change, actor=request_actor(request))
            except changes.ChangeError as exc:
                messages.error(request, str(exc))
                continue
            if change.status == ChangeStatus.ABORTED:
                messages.error(request, f"{change.key}: held steps approved, but the fix failed and was undone.")
            else:
                messages.success(request, f"{change.key}: held steps approved and run; it is {change.status} now.")

    @admin.action(description="Approve patch (sends it to the executor when one is configured)")
    def approve_patch(self, request, queryset) -> None:
        for change in queryset.order_by("number"):
            try:
                change = patch_executor.change_approve_patch(change=change, actor=request_actor(request))
            except changes.ChangeError as exc:
                messages.error(request, str(exc))
                continue
            if change.patch_state == PatchState.SUBMITTED:
                messages.success(request, f"{change.key}: patch approved and sent, build {change.patch_build_id}.")
            elif change.patch_state == PatchState.FAILED:
                messages.error(request, f"{change.key}: patch approved, but sending it failed: {change.patch_error}")
            else:
                messages.success(request, f"{change.key}: patch approved. Apply it, then move the change to canary.")
