"""The console's end users: their sessions (who is active now), a direct message or a command to
one of them, the words of the popup's messages, and the session recordings users agreed to.

A message or command goes down the user's live stream (healing.stream.fanout) and into the audit
log; the session row itself is never edited from here.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import format_html, format_html_join, json_script

from healing import messages as user_messages
from healing.audit import audit_record
from healing.models import ACTIVE_WINDOW, Issue, MessageTemplate, Occurrence, SessionRecording, UserSession
from healing.stream import fanout
from kaizen_site.console import ReadOnlyMixin, form_changes, request_actor

SEND_CHOICES = [
    ("message", "Message (shown in the user's popup)"),
    ("show_message", "Command: show a message on the page"),
    ("retry", "Command: retry the failed action"),
    ("refresh_token", "Command: refresh the session"),
    ("reload", "Command: reload the page"),
    ("reproduce", "Ask to try again with recording (for the issue below)"),
]


class ActiveNowFilter(admin.SimpleListFilter):
    title = "activity"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("now", f"Active now (last {ACTIVE_WINDOW.seconds // 60} min)")]

    def queryset(self, request, queryset):
        if self.value() == "now":
            return queryset.filter(last_seen_at__gte=timezone.now() - ACTIVE_WINDOW)
        return queryset


class SessionSendForm(forms.ModelForm):
    """Nothing of the session is edited: the form sends a message or a command to it."""

    send = forms.ChoiceField(choices=SEND_CHOICES, label="Send")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=1000,
                           help_text="Markdown, for a message or show_message.")  # fmt: skip
    target = forms.CharField(required=False, max_length=500, help_text="For retry: which action (optional).")
    issue = forms.ModelChoiceField(queryset=Issue.objects.none(), required=False,
                                   help_text="For a request to try again: the issue it is about.")  # fmt: skip

    class Meta:
        model = UserSession
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            reported = Occurrence.objects.filter(project_id=self.instance.project_id,
                                                 session_id=self.instance.session_id).values("issue_id")  # fmt: skip
            self.fields["issue"].queryset = Issue.objects.filter(pk__in=reported)

    def clean(self):
        data = super().clean()
        if data.get("send") in ("message", "show_message") and not (data.get("text") or "").strip():
            self.add_error("text", "Write the message.")
        if data.get("send") == "reproduce" and not data.get("issue"):
            self.add_error("issue", "Choose the issue to reproduce.")
        return data


@admin.register(UserSession)
class UserSessionAdmin(admin.ModelAdmin):
    form = SessionSendForm
    list_display = ("__str__", "project", "user_id", "user_email", "last_seen_at", "created_at")
    list_filter = (ActiveNowFilter, "project")
    search_fields = ("session_id", "user_id", "user_name", "user_email")
    ordering = ("-last_seen_at",)
    readonly_fields = ("project", "session_id", "user_id", "user_name", "user_email", "user_agent", "created_at",
                       "last_seen_at", "recent_events")  # fmt: skip
    fieldsets = (
        (None, {"fields": readonly_fields}),
        ("Send a message or a command to this user", {"fields": ("send", "text", "target", "issue")}),
    )

    def has_add_permission(self, request) -> bool:
        return False  # sessions are minted by the page's detector

    @admin.display(description="recent events")
    def recent_events(self, obj: UserSession) -> str:
        rows = obj.events.order_by("-id")[:20]
        items = format_html_join(
            "", "<li><code>{}</code> {} · {} {}</li>",
            ((e.id, e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.payload.get("stage") or e.payload.get("type")
              or e.payload.get("message", "")[:80]) for e in rows),
        )  # fmt: skip
        return format_html("<ul>{}</ul>", items) if rows else "none yet"

    def save_model(self, request, obj: UserSession, form, change: bool) -> None:
        data = form.cleaned_data
        send, text, target = data["send"], (data.get("text") or "").strip(), data.get("target") or None
        with transaction.atomic():
            if send == "message":
                event = fanout.session_message(session=obj, text=text)
            elif send == "reproduce":
                event = fanout.reproduction_request(session=obj, issue=data["issue"])
            else:
                payload = {"message": text} if send == "show_message" else {}
                event = fanout.session_command(session=obj, type=send, target=target, payload=payload)
            audit_record(actor=request_actor(request), action=f"session.{send}", target=f"user-session:{obj.pk}",
                         detail={"event": event.pk, "text": text, "target": target})  # fmt: skip
        messages.success(request, f"Sent to {obj} (event {event.pk}).")

    def log_change(self, request, obj, message):
        return None  # the audit log has it; nothing of the row changed


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ("stage", "issue_type", "text")

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].strip()
        unknown = sorted(set(re.findall(r"\{(\w*)\}", text)) - {"name"})
        if unknown:
            raise forms.ValidationError(f"Unknown placeholder(s): {', '.join(unknown)}. Only {{name}} is filled in.")
        if len(text) > user_messages.MAX_MESSAGE_CHARS:
            raise forms.ValidationError(f"Keep it under {user_messages.MAX_MESSAGE_CHARS} characters: it is a popup.")
        return text


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ("stage", "issue_type_label", "text", "updated_at")
    list_filter = ("stage", "issue_type")
    search_fields = ("text",)

    @admin.display(description="issue type", ordering="issue_type")
    def issue_type_label(self, obj: MessageTemplate) -> str:
        return obj.issue_type or "every type"

    def save_model(self, request, obj: MessageTemplate, form, change: bool) -> None:
        detail = form_changes(form, obj, created=not change)
        super().save_model(request, obj, form, change)
        audit_record(actor=request_actor(request), action="message_template.update" if change else
                     "message_template.create", target=f"message_template:{obj.pk}", detail=detail)  # fmt: skip
        transaction.on_commit(user_messages.forget_templates)

    def delete_model(self, request, obj: MessageTemplate) -> None:
        detail = {"stage": obj.stage, "issue_type": obj.issue_type, "text": obj.text}
        audit_record(actor=request_actor(request), action="message_template.delete",
                     target=f"message_template:{obj.pk}", detail=detail)  # fmt: skip
        super().delete_model(request, obj)
        transaction.on_commit(user_messages.forget_templates)


@admin.register(SessionRecording)
class SessionRecordingAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "session", "issue", "event_count", "size_bytes")
    list_filter = ("session__project",)
    ordering = ("-created_at",)
    fields = ("session", "issue", "created_at", "event_count", "size_bytes", "player")
    readonly_fields = fields

    @admin.display(description="replay")
    def player(self, obj: SessionRecording) -> str:
        """rrweb-player from this server's static files (installed from npm); without it, says so."""
        events_id = f"recording-{obj.pk}"
        return format_html(
            '<link rel="stylesheet" href="{css}"><div id="player-{pk}">'
            "The player loads from the rrweb-player package (make assets); without it the recording "
            "cannot be replayed here.</div>{events}"
            '<script src="{js}"></script><script>'
            "(function () {{ var el = document.getElementById('player-{pk}');"
            " if (!window.rrwebPlayer) return; el.textContent = '';"
            " var Player = window.rrwebPlayer.default || window.rrwebPlayer;"
            " new Player({{ target: el, props: {{ events: JSON.parse("
            "document.getElementById('{events_id}').textContent), width: 960, height: 540 }} }}); }})();"
            "</script>",
            css=static("kaizen/vendor/rrweb-player/style.min.css"),
            js=static("kaizen/vendor/rrweb-player/rrweb-player.umd.min.cjs"),
            pk=obj.pk,
            events_id=events_id,
            events=json_script(obj.events, events_id),
        )
