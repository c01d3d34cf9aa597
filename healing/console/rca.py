"""The console's root-cause write-ups: read the draft, edit the text, approve it.

Opening a draft starts the clock (`rca.rca_opened`); the "Approve" button is the only way to save
(`rca.rca_approve`), which records how far the text moved from the draft and how long it took.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from healing.loop import rca
from healing.models import RcaStatus, RootCauseAnalysis
from kaizen_site.console import request_actor

APPROVE = "_approve"  # the name of the Approve button in the POST
FAILED_SAVE = "_kaizen_rca_failed"  # request attribute: the approval showed an error, not a success
# Only the Approve button saves: the admin's own Save buttons would store nothing.
NO_SAVE_BUTTONS = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}


class RootCauseAnalysisForm(forms.ModelForm):
    approved_text = forms.CharField(
        label="approved text",
        required=False,
        strip=False,  # trailing whitespace is part of the edit distance
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100}),
        help_text="Starts as the draft: edit it, then Approve.",
    )

    class Meta:
        model = RootCauseAnalysis
        fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "approved_text" in self.fields:
            self.fields["approved_text"].initial = self.instance.approved or self.instance.draft

    def clean_approved_text(self) -> str:
        # Browsers send a textarea with CRLF line ends: left as they are, each line of an
        # untouched draft would count as one edited character.
        return self.cleaned_data["approved_text"].replace("\r\n", "\n")


@admin.register(RootCauseAnalysis)
class RootCauseAnalysisAdmin(admin.ModelAdmin):
    form = RootCauseAnalysisForm
    list_display = ("issue", "status", "source", "edit_distance", "seconds_spent", "drafted_at")
    list_filter = ("status", "source")
    list_select_related = ("issue",)
    search_fields = ("issue__title",)
    ordering = ("-created_at", "-id")
    record = ("issue", "change", "status", "source", "drafted_at", "opened_at", "approved_at", "approved_by",
              "edit_distance", "seconds_spent")  # fmt: skip
    readonly_fields = (*record, "draft_markdown", "approved_markdown", "approve_button")

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.status == RcaStatus.APPROVED:
            text = ("approved_markdown", "draft_markdown")
        else:
            text = ("draft_markdown", "approved_text", "approve_button")
        return ((None, {"fields": self.record}), ("Write-up", {"fields": text}))

    def has_add_permission(self, request) -> bool:
        return False  # Kaizen drafts them, for P0/P1 incidents

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the record of what was drafted and approved

    @admin.display(description="draft")
    def draft_markdown(self, obj: RootCauseAnalysis) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.draft)

    @admin.display(description="approved text")
    def approved_markdown(self, obj: RootCauseAnalysis) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.approved)

    @admin.display(description="")
    def approve_button(self, obj: RootCauseAnalysis) -> str:
        return format_html('<input type="submit" class="default" name="{}" value="Approve">', APPROVE)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            obj = self.get_object(request, object_id)
            if obj is not None and obj.status == RcaStatus.DRAFT and self.has_change_permission(request, obj):
                rca.rca_opened(rca=obj)
        return super().change_view(request, object_id, form_url, {**NO_SAVE_BUTTONS, **(extra_context or {})})

    def save_model(self, request, obj: RootCauseAnalysis, form, change: bool) -> None:
        if APPROVE not in request.POST:
            setattr(request, FAILED_SAVE, True)
            messages.error(request, "Nothing was saved: use Approve to approve the text.")
            return
        try:
            rca.rca_approve(rca=obj, text=form.cleaned_data.get("approved_text") or "", actor=request_actor(request))
        except rca.RcaError as exc:
            setattr(request, FAILED_SAVE, True)
            messages.error(request, f"Not approved: {exc}")

    def response_change(self, request, obj):
        if getattr(request, FAILED_SAVE, False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
