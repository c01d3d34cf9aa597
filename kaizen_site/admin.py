"""The LLM call log in the console: read-only, with the configuration state shown up front."""

from django.conf import settings
from django.contrib import admin
from django.db.models import Sum

from kaizen_site.console import ReadOnlyMixin
from kaizen_site.models import LLMCall


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
