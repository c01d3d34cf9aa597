"""The End users page: one of the product's users, found by id or email — their sessions, the
issues they met (their reports grouped by issue), their per-user flag overrides, and a message
to their live session. Every read is an exact, indexed match and capped: a user with a million
reports costs no more than one with ten."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from flags.models import Override
from healing.audit import audit_record
from healing.models import ACTIVE_WINDOW, Issue, Occurrence, UserSession
from healing.stream.fanout import session_message
from kaizen_site.console import request_actor

logger = logging.getLogger("kaizen.console")

TEMPLATE = "admin/healing/end_users.html"
ISSUES_SHOWN = 50
SESSIONS_SHOWN = 20
OVERRIDES_SHOWN = 100
IDENTITIES_SCANNED = 200  # of the user's newest reports, for the ids and emails they went by
MESSAGE_MAX = 500


class SearchForm(forms.Form):
    q = forms.CharField(label="User id or email", max_length=254, strip=True)


class MessageForm(forms.Form):
    session = forms.IntegerField(widget=forms.HiddenInput)
    text = forms.CharField(max_length=MESSAGE_MAX, widget=forms.Textarea(attrs={"rows": 2}), label="Message")


@dataclass(frozen=True)
class UserIssue:
    issue: Issue
    reports: int
    last_seen: datetime


@dataclass
class EndUser:
    term: str
    user_ids: list[str]
    emails: list[str]
    sessions: list[Any]
    issues: list[UserIssue]
    overrides: list[Override]
    live_since: datetime

    @property
    def found(self) -> bool:
        return bool(self.user_ids or self.emails or self.sessions)


def _matching(term: str, *, id_field: str, email_field: str) -> Q:
    return Q(**{id_field: term}) | Q(**{f"{email_field}__iexact": term})


def end_user_find(*, term: str, now: datetime | None = None) -> EndUser:
    """Everything about the user `term` names (an id, or an email in any case). Found by email,
    the ids that email went by count too: their sessions and reports without the email are theirs."""
    now = now or timezone.now()
    named = _matching(term, id_field="user_id", email_field="user_email")
    seen = [
        *Occurrence.objects.filter(named).order_by("-id").values_list("user_id", "user_email")[:IDENTITIES_SCANNED],
        *UserSession.objects.filter(named).order_by("-id").values_list("user_id", "user_email")[:IDENTITIES_SCANNED],
    ]
    user_ids = sorted({uid for uid, _ in seen if uid})
    emails = sorted({email for _, email in seen if email})
    theirs = Q(user_id__in=user_ids) | Q(user_email__iexact=term)
    sessions = list(
        UserSession.objects.filter(theirs).select_related("project").order_by("-last_seen_at")[:SESSIONS_SHOWN]
    )
    reports = Occurrence.objects.filter(theirs)
    grouped = list(
        reports.values("issue_id").annotate(n=Count("id"), last=Max("received_at")).order_by("-last")[:ISSUES_SHOWN]
    )
    issues = Issue.objects.select_related("project").in_bulk([row["issue_id"] for row in grouped])
    overrides = list(
        Override.objects.filter(user_id__in=user_ids)
        .select_related("flag__project")
        .order_by("flag__key")[:OVERRIDES_SHOWN]
    )
    return EndUser(
        term=term,
        user_ids=user_ids,
        emails=emails,
        sessions=sessions,
        issues=[
            UserIssue(issue=issues[r["issue_id"]], reports=r["n"], last_seen=r["last"])
            for r in grouped
            if r["issue_id"] in issues
        ],  # fmt: skip
        overrides=overrides,
        live_since=now - ACTIVE_WINDOW,
    )


def _render(request, *, status: int = 200, **context) -> TemplateResponse:
    return TemplateResponse(
        request, TEMPLATE, {**admin.site.each_context(request), "title": "End users", **context}, status=status
    )


def end_users_view(request):
    """GET ?q=: the search and what it found. POST: a message to one of the user's live sessions."""
    if not request.user.has_perm("healing.view_issue"):
        raise PermissionDenied
    if request.method == "POST":
        return _message_send(request)
    if "q" not in request.GET:
        return _render(request, search=SearchForm())
    search = SearchForm(request.GET)
    if not search.is_valid():
        return _render(request, search=search, status=400)
    user = end_user_find(term=search.cleaned_data["q"])
    return _render(request, search=search, end_user=user, message_form=MessageForm())


def _message_send(request):
    if not request.user.has_perm("healing.change_issue"):
        raise PermissionDenied
    form = MessageForm(request.POST)
    back = request.POST.get("q", "")
    search = SearchForm({"q": back})
    if not form.is_valid():
        user = end_user_find(term=back) if search.is_valid() else None
        return _render(request, search=search, end_user=user, message_form=form, status=400)
    session = UserSession.objects.filter(pk=form.cleaned_data["session"]).first()
    if session is None:
        messages.error(request, "That session no longer exists.")
    else:
        event = session_message(session=session, text=form.cleaned_data["text"])
        detail = {"user_id": session.user_id, "text": form.cleaned_data["text"], "event": event.pk}
        audit_record(
            actor=request_actor(request),
            action="session.message",
            target=f"user-session:{session.pk}",  # as the session's own console page records it
            detail=detail,
        )
        live = session.last_seen_at >= timezone.now() - ACTIVE_WINDOW
        messages.success(
            request,
            "Message sent to the live session."
            if live
            else "Message queued: the session is not live, it is shown when the user comes back.",
        )
    return HttpResponseRedirect(f"{reverse('console-end-users')}?{urlencode({'q': back})}")
