"""The LLM call log in the console: read-only, with the configuration state shown up front."""

from django.conf import settings
from django.contrib import admin
from django.db.models import Sum

from kaizen_site.console import ReadOnlyMixin, request_actor
from kaizen_site.models import AdminSession, LLMCall
from kaizen_site.security.sessions import admin_session_revoke


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "purpose",
        "model",
        "attempt",
        "valid",
        "tokens_in",
        "tokens_out",
        "latency_ms",
        "cost_usd",
    )
    list_filter = ("purpose", "model", "valid")
    search_fields = ("issue_id", "request_id", "error")
    date_hierarchy = "created_at"

    def changelist_view(self, request, extra_context=None):
        if not settings.ANTHROPIC_API_KEY:
            self.message_user(request, "LLM diagnosis off: ANTHROPIC_API_KEY not set.", level="warning")
        total = LLMCall.objects.aggregate(cost=Sum("cost_usd"))["cost"]
        extra_context = {**(extra_context or {}), "title": f"LLM calls (total estimated cost ${total or 0:.4f})"}
        return super().changelist_view(request, extra_context)


@admin.register(AdminSession)
class AdminSessionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every console sign-in; revoking one signs that browser out at its next request."""

    list_display = ("user", "ip", "device", "created_at", "expires_at", "last_seen_at", "is_active", "revoked_by")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "ip", "user_agent")
    date_hierarchy = "created_at"
    exclude = ("session_key",)
    actions = ["revoke"]

    @admin.display(description="device")
    def device(self, obj: AdminSession) -> str:
        return f"{obj.user_agent[:80]} ({obj.fingerprint[:8]})"

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: AdminSession) -> bool:
        return obj.active

    @admin.action(description="Revoke the selected sessions (signs them out)")
    def revoke(self, request, queryset) -> None:
        ended = sum(admin_session_revoke(session=row, actor=request_actor(request)) for row in queryset)
        self.message_user(request, f"{ended} session(s) revoked.")
