"""The Quick Fix page: the owner types what to fix or change, reads what Kaizen found (similar
issues, affected users, the AI recommendation, the risk), then opens the Change — applied now,
customized first, or scheduled for later. The work is healing.loop.quick_fix; this is the form."""

import json
import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from healing.changes.lifecycle import ChangeError
from healing.loop import quick_fix
from healing.models import Issue, Severity
from kaizen_site.console import request_actor

logger = logging.getLogger("kaizen.console")

TEMPLATE = "admin/healing/quick_fix.html"


class AskForm(forms.Form):
    text = forms.CharField(
        label="What should be fixed or changed?",
        max_length=quick_fix.REQUEST_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. Checkout fails for users with an empty cart"}),
    )


class ChangeForm(forms.Form):
    """The suggested Change, editable ("customize") before it is created."""

    CUSTOMIZABLE = ("summary", "plan", "patch_diff", "success_criteria", "rollback_plan")

    request_text = forms.CharField(widget=forms.HiddenInput, max_length=quick_fix.REQUEST_MAX)
    issue = forms.UUIDField(widget=forms.HiddenInput, required=False)
    title = forms.CharField(max_length=200)
    severity = forms.ChoiceField(choices=Severity.choices)
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=2000)
    plan = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        initial="[]",
        help_text='Remediation actions, in order: [{"action": …, "params": {…}}].',
    )
    patch_diff = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), required=False, label="Code patch")
    success_criteria = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=1000)
    rollback_plan = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=1000)
    start_at = forms.DateTimeField(
        required=False,
        label="Start at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Only for “Schedule for later” (your timezone).",
    )

    def clean_plan(self):
        text = self.cleaned_data.get("plan") or "[]"
        try:
            plan = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not JSON: {exc}") from exc
        if not isinstance(plan, list):
            raise ValidationError('A list of steps: [{"action": …, "params": {…}}].')
        return plan

    def clean(self):
        cleaned = super().clean()
        mode = self.data.get("mode")
        if mode not in ("apply", "schedule"):
            raise ValidationError("Choose Apply or Schedule for later.")
        if mode == "schedule" and not cleaned.get("start_at"):
            self.add_error("start_at", "Say when to start it.")
        if mode == "apply":
            cleaned["start_at"] = None
        cleaned["mode"] = mode
        return cleaned


def _initial(assessment: quick_fix.Assessment) -> dict:
    suggestion = assessment.suggestion
    first_line = assessment.text.strip().splitlines()[0][:200] if assessment.text.strip() else ""
    best = assessment.similar[0].issue if assessment.similar else None
    initial = {"request_text": assessment.text, "issue": best.pk if best else None, "title": first_line,
               "severity": best.severity if best else Severity.P2, "plan": "[]"}  # fmt: skip
    if suggestion is not None:
        initial.update(
            title=suggestion.title, severity=suggestion.severity, summary=suggestion.summary,
            plan=json.dumps(suggestion.plan, indent=1), patch_diff=suggestion.patch_diff,
            success_criteria=suggestion.success_criteria, rollback_plan=suggestion.rollback_plan,
        )  # fmt: skip
    return initial


def _render(request, *, status: int = 200, **context) -> TemplateResponse:
    form = context.get("form")
    customizable = [form[name] for name in ChangeForm.CUSTOMIZABLE] if form is not None else []
    return TemplateResponse(
        request,
        TEMPLATE,
        {**admin.site.each_context(request), "title": "Quick Fix", "customizable": customizable, **context},
        status=status,
    )


def quick_fix_view(request):
    """GET: the question. POST `assess`: the findings and the suggested Change. POST `create`:
    the Change is opened (or the form comes back with what is wrong, as a 400)."""
    if not request.user.has_perm("healing.view_issue"):
        raise PermissionDenied
    if request.method != "POST":
        return _render(request, ask=AskForm())
    if "create" not in request.POST:
        ask = AskForm(request.POST)
        if not ask.is_valid():
            return _render(request, ask=ask, status=400)
        assessment = quick_fix.quick_fix_assess(text=ask.cleaned_data["text"])
        return _render(request, ask=ask, assessment=assessment, form=ChangeForm(initial=_initial(assessment)))
    if not request.user.has_perm("healing.add_change"):
        raise PermissionDenied
    form = ChangeForm(request.POST)
    ask = AskForm({"text": request.POST.get("request_text", "")})
    if not form.is_valid():
        return _render(request, ask=ask, form=form, status=400)
    data = form.cleaned_data
    issue = Issue.objects.filter(pk=data["issue"]).first() if data.get("issue") else None
    try:
        change = quick_fix.quick_fix_create(
            request_text=data["request_text"], title=data["title"], severity=data["severity"], plan=data["plan"],
            actor=request_actor(request), patch_diff=data["patch_diff"], summary=data["summary"],
            success_criteria=data["success_criteria"], rollback_plan=data["rollback_plan"], issue=issue,
            start_at=data["start_at"],
        )  # fmt: skip
    except (ChangeError, ValidationError) as exc:
        problem = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        logger.info("quick fix refused", extra={"problem": problem})
        form.add_error(None, problem)
        return _render(request, ask=ask, form=form, status=400)
    if data["start_at"]:
        when = timezone.localtime(data["start_at"]).strftime("%Y-%m-%d %H:%M")
        messages.success(request, f"{change.key} opened as a draft; it starts at {when}.")
    else:
        messages.success(request, f"{change.key} opened and started.")
    return HttpResponseRedirect(reverse("admin:healing_change_change", args=[change.pk]))
