"""The console's dead letters: reports the ingest consumer could not store, with why.

Read-only, except one action: once the cause is fixed, "Store again" runs the record through the
store (idempotent), marks the letter stored and records it in the audit log.
"""

from django.contrib import admin, messages
from django.utils.html import format_html

from healing.audit import audit_record
from healing.ingest import consumer
from healing.models import IngestDeadLetter
from kaizen_site.console import ReadOnlyMixin, request_actor

STORED_AGAIN = "ingest.dead_letter_stored"


@admin.register(IngestDeadLetter)
class IngestDeadLetterAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "project", "event_id", "attempts", "short_error", "stored_at")
    list_filter = ("stored_at", "project")
    search_fields = ("entry_id", "event_id", "error")
    ordering = ("-created_at", "-id")
    fields = ("entry_id", "stream", "project", "event_id", "attempts", "created_at", "stored_at", "error", "record")
    readonly_fields = fields
    actions = ("store_again",)

    @admin.display(description="error")
    def short_error(self, obj: IngestDeadLetter) -> str:
        return obj.error.splitlines()[0][:120] if obj.error else ""

    @admin.display(description="record as received")
    def record(self, obj: IngestDeadLetter) -> str:
        return format_html("<pre>{}</pre>", bytes(obj.raw).decode(errors="backslashreplace"))

    @admin.action(description="Store again (after fixing the cause)", permissions=["store"])
    def store_again(self, request, queryset) -> None:
        stored, failing = 0, 0
        for letter in queryset.filter(stored_at__isnull=True):
            if consumer.dead_letter_store_again(dead_letter=letter):
                stored += 1
                audit_record(actor=request_actor(request), action=STORED_AGAIN, target=f"dead letter {letter.id}",
                             detail={"entry_id": letter.entry_id, "event_id": str(letter.event_id or "")})  # fmt: skip
            else:
                failing += 1
        if stored:
            self.message_user(request, f"{stored} stored.", messages.SUCCESS)
        if failing:
            self.message_user(request, f"{failing} still fail; see the error.", messages.ERROR)

    def has_store_permission(self, request) -> bool:
        # The rows are read-only; storing one again is what changing it means here.
        return request.user.has_perm("healing.change_ingestdeadletter")
