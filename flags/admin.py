"""Flags in the Manager's Console. Every save goes through flags.services, so the console's edits
land in the history and the audit log like any other change."""

from django import forms
from django.contrib import admin, messages

from . import services
from .models import RESERVED_KEYS, Flag, FlagChange, Override


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


class FlagChangeInline(admin.TabularInline):
    model = FlagChange
    fields = ["created_at", "actor", "action", "before", "after", "why"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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

    @admin.action(description="Emergency kill switch: turn the selected flags off for everyone")
    def kill_switch(self, request, queryset):
        actor = request.user.get_username()
        for flag in queryset:
            services.flag_kill(flag=flag, actor=actor, why="Emergency kill switch in the console.")
        self.message_user(request, f"Killed {queryset.count()} flag(s).", messages.WARNING)

    @admin.action(description="Release the kill switch on the selected flags")
    def revive(self, request, queryset):
        actor = request.user.get_username()
        for flag in queryset:
            services.flag_revive(flag=flag, actor=actor, why="Kill switch released in the console.")
        self.message_user(request, f"Released {queryset.count()} flag(s).")


@admin.register(FlagChange)
class FlagChangeAdmin(admin.ModelAdmin):
    """Every project's flag history in one place; append-only."""

    list_display = ["created_at", "flag", "action", "actor", "why"]
    list_filter = ["action"]
    list_select_related = ["flag"]
    search_fields = ["flag__key", "actor", "why"]
    readonly_fields = ["flag", "actor", "action", "before", "after", "why", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
