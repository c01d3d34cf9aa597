"""Flags, their rollouts and the promotion policy in the Manager's Console. Every flag save goes
through flags.services and every rollout move through flags.rollout.engine, so the console's edits land
in the history and the audit log like any other change."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.utils import timezone
from django.utils.html import format_html_join

from flags import services
from flags.models import (
    ACTIVE_PHASES,
    RESERVED_KEYS,
    ApprovalState,
    Flag,
    FlagChange,
    Override,
    PromotionPolicy,
    Rollout,
    RolloutStep,
)
from flags.rollout import engine as rollouts
from healing.audit import audit_record
from kaizen_site.console import ReadOnlyMixin


class FlagForm(forms.ModelForm):
    why = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why this change (kept in the history)."
    )

    class Meta:
        model = Flag
        fields = ["project", "key", "description", "enabled", "rollout_percentage", "group_id", "status"]

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if key in RESERVED_KEYS:
            raise forms.ValidationError(f'"{key}" is reserved.')
        return key


class OverrideInline(admin.TabularInline):
    model = Override
    fields = ["user_id", "enabled", "reason", "expires_at", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]
    extra = 0


class FlagChangeInline(ReadOnlyMixin, admin.TabularInline):
    model = FlagChange
    fields = ["created_at", "actor", "action", "before", "after", "why"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "history"


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    form = FlagForm
    list_display = ["key", "project", "enabled", "rollout_percentage", "status", "killed", "updated_at"]
    list_filter = ["killed", "enabled", "status", "project"]
    list_select_related = ["project"]
    search_fields = ["key", "description"]
    readonly_fields = ["killed", "killed_at", "killed_by", "created_by", "created_at", "updated_at"]
    inlines = [OverrideInline, FlagChangeInline]
    actions = ["kill_switch", "revive"]

    def get_readonly_fields(self, request, obj=None):
        # The key names the flag in client code and the history: fixed once created.
        if obj is not None:
            return [*self.readonly_fields, "project", "key"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting would erase the history; kill or disable a flag instead

    def save_model(self, request, obj, form, change):
        actor, why = request.user.get_username(), form.cleaned_data.get("why", "")
        if change:
            changes = {field: form.cleaned_data[field] for field in form.changed_data if field in services.EDITABLE}
            saved = services.flag_update(flag=obj, changes=changes, actor=actor, why=why)
        else:
            saved = services.flag_create(
                project=obj.project,
                key=obj.key,
                actor=actor,
                why=why,
                description=obj.description,
                enabled=obj.enabled,
                rollout_percentage=obj.rollout_percentage,
                group_id=obj.group_id,
                status=obj.status,
            )
        # The admin goes on with `obj` (inlines, log entry, redirect): make it the saved row.
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def save_formset(self, request, form, formset, change):
        if formset.model is not Override:
            return super().save_formset(request, form, formset, change)
        flag, actor = form.instance, request.user.get_username()
        formset.save(commit=False)
        for override in formset.deleted_objects:
            services.override_clear(flag=flag, user_id=override.user_id, actor=actor, why="Removed in the console.")
        for override_form in formset.forms:
            if override_form in formset.deleted_forms or not override_form.has_changed():
                continue
            override = override_form.instance
            previous_user = override_form.initial.get("user_id")
            if previous_user and previous_user != override.user_id:
                services.override_clear(flag=flag, user_id=previous_user, actor=actor, why="Renamed in the console.")
            services.override_set(
                flag=flag,
                user_id=override.user_id,
                enabled=override.enabled,
                actor=actor,
                why=override.reason,
                expires_at=override.expires_at,
            )

    # Killing or reviving changes the flag: the same `flags.change_flag` the owner API asks for.
    @admin.action(description="Emergency kill switch: turn the selected flags off for everyone", permissions=["change"])
    def kill_switch(self, request, queryset):
        actor = request.user.get_username()
        for flag in queryset:
            services.flag_kill(flag=flag, actor=actor, why="Emergency kill switch in the console.")
        self.message_user(request, f"Killed {queryset.count()} flag(s).", messages.WARNING)

    @admin.action(description="Release the kill switch on the selected flags", permissions=["change"])
    def revive(self, request, queryset):
        actor = request.user.get_username()
        for flag in queryset:
            services.flag_revive(flag=flag, actor=actor, why="Kill switch released in the console.")
        self.message_user(request, f"Released {queryset.count()} flag(s).")


@admin.register(FlagChange)
class FlagChangeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every project's flag history in one place; append-only."""

    list_display = ["created_at", "flag", "action", "actor", "why"]
    list_filter = ["action"]
    list_select_related = ["flag"]
    search_fields = ["flag__key", "actor", "why"]
    readonly_fields = ["flag", "actor", "action", "before", "after", "why", "created_at"]


# --- Rollouts and the promotion policy ---------------------------------------------------------


class RolloutStepInline(ReadOnlyMixin, admin.TabularInline):
    model = RolloutStep
    fields = ["at", "from_phase", "to_phase", "outcome", "actor", "why", "metrics"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "steps"


class RolloutActionForm(helpers.ActionForm):
    why = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"placeholder": "why (kept in the audit log)", "size": 40})
    )


class RolloutStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "in progress"), ("awaiting", "awaiting approval"), ("finished", "finished")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(phase__in=ACTIVE_PHASES)
        if self.value() == "awaiting":
            return queryset.filter(approval_state=ApprovalState.AWAITING)
        if self.value() == "finished":
            return queryset.exclude(phase__in=ACTIVE_PHASES)
        return queryset


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    """Rollouts are started and moved by flags.rollout.engine only: the page shows them, and the two
    actions are the owner's levers (approve a waiting promotion, roll back now)."""

    list_display = ["change", "flag", "phase", "exposure", "health", "awaiting", "phase_started_at", "due_at"]
    list_filter = [RolloutStateFilter, "phase"]
    list_select_related = ["change", "flag"]
    search_fields = ["flag__key", "affected_user_id", "fingerprint"]
    ordering = ["-created_at"]
    actions = ["approve_promotion", "roll_back_now"]
    action_form = RolloutActionForm
    inlines = [RolloutStepInline]
    readonly_fields = [
        "change", "flag", "phase", "exposure", "awaiting", "phase_started_at", "due_at", "health", "health_notes",
        "health_checked_at", "affected_user_id", "reached_users", "target_attributes", "issue", "fingerprint",
        "canary_seconds", "partial_seconds", "full_seconds", "partial_percentage", "watched_allowance",
        "error_rate_threshold", "baseline_error_rate", "created_by", "created_at", "finished_at",
    ]  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request) -> bool:
        return False  # a rollout starts from its verified Change (flags.rollout.start.rollout_start)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # saving the form would write back a phase the engine may have moved

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_steer_permission(self, request) -> bool:
        return request.user.has_perm("flags.change_rollout")

    @admin.display(description="exposure")
    def exposure(self, obj: Rollout) -> str:
        reached = f" + {len(obj.reached_users)} who met the bug since" if obj.reached_users else ""
        if obj.phase == "canary":
            return f"1 user ({obj.affected_user_id}){reached}"
        return f"{obj.exposure_percentage} %{reached if obj.phase == 'partial' else ''}"

    @admin.display(description="health (this phase)")
    def health(self, obj: Rollout) -> str:
        if obj.health_checked_at is None:
            return "not checked yet"
        return f"{obj.phase_new_occurrences} new occurrence(s) of the watched issue"

    @admin.display(description="awaiting approval")
    def awaiting(self, obj: Rollout) -> str:
        if obj.approval_state != ApprovalState.AWAITING:
            return "—"
        return format_html_join("", "<div>{}</div>", ((reason,) for reason in obj.approval_reasons))

    @admin.display(description="phase ends")
    def due_at(self, obj: Rollout):
        seconds = obj.phase_seconds()
        return obj.phase_started_at + timedelta(seconds=seconds) if seconds else None

    def _each(self, request, queryset, act, done: str) -> None:
        actor, why = request.user.get_username(), request.POST.get("why", "").strip()
        moved = 0
        for rollout in queryset.select_related("change", "flag"):
            try:
                act(rollout=rollout, actor=actor, why=why)
                moved += 1
            except rollouts.RolloutError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if moved:
            self.message_user(request, f"{done} {moved} rollout(s).")

    @admin.action(description="Approve the waiting promotion of the selected rollouts", permissions=["steer"])
    def approve_promotion(self, request, queryset):
        def approve(*, rollout, actor, why):
            outcome = rollouts.rollout_approve(rollout=rollout, actor=actor, why=why)
            if outcome == rollouts.Outcome.ROLLED_BACK:
                self.message_user(request, f"{rollout.change.key}: degraded, rolled back instead.", messages.WARNING)

        self._each(request, queryset, approve, "Approved")

    @admin.action(description="Roll back the selected rollouts now (kills their flags)", permissions=["steer"])
    def roll_back_now(self, request, queryset):
        def roll_back(*, rollout, actor, why):
            rollouts.rollout_rollback(rollout=rollout, actor=actor, why=why or "Rolled back by hand in the console.")

        self._each(request, queryset, roll_back, "Rolled back")


class PromotionPolicyForm(forms.ModelForm):
    class Meta:
        model = PromotionPolicy
        fields = [
            "project", "max_auto_risk", "max_auto_exposure", "daily_llm_budget_usd", "blocked_from_hour",
            "blocked_to_hour",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("blocked_from_hour", "blocked_to_hour"):
            self.fields[name].help_text += f" Timezone: {settings.KAIZEN_OWNER_TIMEZONE}."


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(admin.ModelAdmin):
    """The owner's rules for promoting without them; every edit is in the audit log."""

    form = PromotionPolicyForm
    list_display = ["__str__", "max_auto_risk", "max_auto_exposure", "daily_llm_budget_usd", "blocked_hours"]
    readonly_fields = ["updated_by", "updated_at"]

    @admin.display(description="blocked hours")
    def blocked_hours(self, obj: PromotionPolicy) -> str:
        if obj.blocked_from_hour is None:
            return "—"
        return f"{obj.blocked_from_hour:02d}:00–{obj.blocked_to_hour:02d}:00 {settings.KAIZEN_OWNER_TIMEZONE}"

    def save_model(self, request, obj, form, change):
        names = form.changed_data if change else list(form.fields)
        detail = {
            "before": {name: str(form.initial.get(name)) for name in names} if change else {},
            "after": {name: str(form.cleaned_data.get(name)) for name in names},
        }
        obj.updated_by, obj.updated_at = request.user.get_username(), timezone.now()
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                actor=obj.updated_by,
                action="policy.update" if change else "policy.create",
                target=f"policy:{obj.project.slug if obj.project else 'default'}",
                detail=detail,
            )

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(
                actor=request.user.get_username(),
                action="policy.delete",
                target=f"policy:{obj.project.slug if obj.project else 'default'}",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            self.delete_model(request, policy)
