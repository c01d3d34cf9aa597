"""The Manager's Console (Django admin): issues, the audit log, classification rules and occurrences."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from healing.models import AuditEntry, ClassificationRule, Issue, Occurrence
from tests.factories import IssueEventFactory, IssueFactory, OccurrenceFactory, ProjectFactory
from tests.healing.console.test_admin import form_data, rendered_form_data

pytestmark = pytest.mark.django_db


# --- Issues ---------------------------------------------------------------------------------


@pytest.fixture
def issues():
    """Four issues that differ in every filtered column; two with occurrences carrying users."""
    shop, blog = ProjectFactory(name="Shop"), ProjectFactory(name="Blog")
    long_ago = timezone.now() - timedelta(days=400)
    made = {
        "login": IssueFactory(project=shop, title="Login loops back to the form", type="AUTH_ISSUE", severity="P1",
                              enqueue_state="pending"),
        "pay": IssueFactory(project=shop, title="Payment taken but credits missing", type="BILLING_ISSUE",
                            severity="P0", stage="diagnosing", enqueue_state="sent"),
        "slow": IssueFactory(project=blog, title="Export is slow", type="SLOW_RESPONSE", severity="P2",
                             stage="resolved"),
        "old": IssueFactory(project=blog, title="Old crash in export", first_seen=long_ago, severity="P3"),
    }  # fmt: skip
    OccurrenceFactory(issue=made["login"], user_id="u-42", user_email="Ana@Example.com")
    OccurrenceFactory(issue=made["pay"], user_id="u-7", user_email="bob@example.com")
    OccurrenceFactory(issue=made["pay"], user_id="u-7", user_email="bob@example.com")
    return made


def listed(response) -> set[str]:
    assert response.status_code == 200
    return {issue.title for issue in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"login", "pay", "slow", "old"}),
        ("type__exact=AUTH_ISSUE", {"login"}),
        ("severity__exact=P0", {"pay"}),
        ("stage__exact=resolved", {"slow"}),
        ("stage__exact=detected", {"login", "old"}),
        ("enqueue_state__exact=pending", {"login"}),
        ("severity__exact=P1&project__id__exact={shop}", {"login"}),
        ("project__id__exact={blog}", {"slow", "old"}),
        ("last_seen__year={last_year}", {"old"}),
        ("q=export", {"slow", "old"}),
        ("q=credits+missing", {"pay"}),
        ("q=ana@example.COM", {"login"}),
        ("q=bob@example.com", {"pay"}),
        ("q=u-42", {"login"}),
        ("q=u-4", set()),  # user ids match exactly
        ("q=nobody@example.com", set()),
        ("q=bob@example.com&severity__exact=P1", set()),
    ],
)
def test_issue_list_filters_and_search(admin_client, issues, query, expected):
    shop, blog = issues["login"].project_id, issues["slow"].project_id
    query = query.format(shop=shop, blog=blog, last_year=issues["old"].last_seen.year)

    response = admin_client.get(f"/admin/healing/issue/?{query}")

    assert listed(response) == {issues[name].title for name in expected}


def test_issue_search_by_issue_or_event_id(admin_client, issues):
    event = issues["pay"].occurrences.first()
    assert listed(admin_client.get(f"/admin/healing/issue/?q={issues['slow'].id}")) == {issues["slow"].title}
    assert listed(admin_client.get(f"/admin/healing/issue/?q={event.event_id}")) == {issues["pay"].title}


def test_issue_list_queries_do_not_grow_with_rows(admin_client, issues):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/admin/healing/issue/?q=bob@example.com").status_code == 200
            assert admin_client.get("/admin/healing/issue/").status_code == 200
        return len(queries)

    baseline = list_queries()
    for _ in range(10):
        OccurrenceFactory(issue__project=ProjectFactory(), user_email="bob@example.com")
    assert list_queries() == baseline


def test_issue_page_shows_the_latest_occurrences_and_the_timeline(admin_client):
    issue = IssueFactory(title="Generate did nothing")
    start = timezone.now() - timedelta(hours=1)
    occurrences = [
        OccurrenceFactory(issue=issue, received_at=start + timedelta(seconds=i), user_email=f"user{i}@example.com")
        for i in range(55)
    ]
    IssueEventFactory(issue=issue, stage="detected", message="We noticed the problem.")
    IssueEventFactory(issue=issue, stage="diagnosing", message="Looking into the cause.", detail="pattern: none")

    response = admin_client.get(f"/admin/healing/issue/{issue.id}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    shown_emails = {f"user{i}@example.com" for i in range(55) if f"user{i}@example.com<" in page}
    assert shown_emails == {o.user_email for o in occurrences[5:]}  # the newest 50
    assert "We noticed the problem." in page and "Looking into the cause." in page and "pattern: none" in page
    assert f"/admin/healing/occurrence/{occurrences[-1].pk}/change/" in page
    inlines = {type(i.opts).__name__: i for i in response.context["inline_admin_formsets"]}
    for inline in inlines.values():
        assert not inline.has_add_permission and not inline.has_delete_permission and not inline.has_change_permission


def test_a_manual_severity_change_is_audited_and_leaves_ingested_data_alone(admin_client):
    issue = IssueFactory(title="Generate did nothing", severity="P2", occurrence_count=3)
    OccurrenceFactory(issue=issue)
    data = rendered_form_data(admin_client.get(f"/admin/healing/issue/{issue.id}/change/"))
    Issue.objects.filter(pk=issue.pk).update(occurrence_count=4)  # a report arrives meanwhile
    data.update(severity="P0", title="Renamed by hand")

    response = admin_client.post(f"/admin/healing/issue/{issue.id}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    issue.refresh_from_db()
    assert (issue.severity, issue.title, issue.occurrence_count) == ("P0", "Generate did nothing", 4)
    entry = AuditEntry.objects.get(action="issue.update")
    assert entry.actor == "admin"
    assert entry.target == f"issue:{issue.id}"
    assert entry.detail == {"before": {"severity": "P2"}, "after": {"severity": "P0"}}


def test_resolving_an_issue_by_hand_stamps_it(admin_client):
    issue = IssueFactory()
    data = rendered_form_data(admin_client.get(f"/admin/healing/issue/{issue.id}/change/"))
    data["stage"] = "resolved"

    assert admin_client.post(f"/admin/healing/issue/{issue.id}/change/", data).status_code == 302

    issue.refresh_from_db()
    assert issue.stage == "resolved" and issue.resolved_at is not None
    assert AuditEntry.objects.get(action="issue.update").detail["after"] == {"stage": "resolved"}


def test_saving_an_unchanged_issue_writes_no_audit_entry(admin_client):
    issue = IssueFactory()
    data = rendered_form_data(admin_client.get(f"/admin/healing/issue/{issue.id}/change/"))
    assert admin_client.post(f"/admin/healing/issue/{issue.id}/change/", data).status_code == 302
    assert not AuditEntry.objects.exists()


def test_issues_cannot_be_added_or_deleted(admin_client):
    issue = IssueFactory()
    assert admin_client.get("/admin/healing/issue/add/").status_code == 403
    assert admin_client.post(f"/admin/healing/issue/{issue.id}/delete/", {"post": "yes"}).status_code == 403
    assert Issue.objects.filter(pk=issue.pk).exists()


# --- Audit log ------------------------------------------------------------------------------


def test_audit_entries_are_read_only(admin_client):
    entry = AuditEntry.objects.create(actor="kaizen", action="issue.update", target="issue:1")

    assert admin_client.get("/admin/healing/auditentry/add/").status_code == 403
    added = admin_client.post("/admin/healing/auditentry/add/", {"actor": "x", "action": "y", "target": "z"})
    assert added.status_code == 403
    assert admin_client.post(f"/admin/healing/auditentry/{entry.id}/delete/", {"post": "yes"}).status_code == 403
    change = admin_client.post(f"/admin/healing/auditentry/{entry.id}/change/", {"actor": "me", "action": "y"})
    assert change.status_code == 403
    bulk = admin_client.post(
        "/admin/healing/auditentry/", {"action": "delete_selected", "_selected_action": [entry.id], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert list(AuditEntry.objects.values_list("pk", "actor", "action")) == [(entry.pk, "kaizen", "issue.update")]
    assert admin_client.get(f"/admin/healing/auditentry/{entry.id}/change/").status_code == 200  # viewable


def test_audit_list_filters_by_action_and_actor_and_searches_target(admin_client):
    AuditEntry.objects.create(actor="kaizen", action="issue.update", target="issue:a")
    AuditEntry.objects.create(actor="admin", action="rule.update", target="rule:1")
    AuditEntry.objects.create(actor="admin", action="issue.update", target="issue:b")

    def targets(query):
        response = admin_client.get(f"/admin/healing/auditentry/?{query}")
        assert response.status_code == 200
        return {e.target for e in response.context["cl"].result_list}

    assert targets("action=issue.update") == {"issue:a", "issue:b"}
    assert targets("actor=admin") == {"rule:1", "issue:b"}
    assert targets("q=rule:") == {"rule:1"}


# --- Classification rules -------------------------------------------------------------------


def test_a_rule_edit_takes_effect_in_classification(
    admin_client, direct_mode, post_report, django_capture_on_commit_callbacks
):
    rule = ClassificationRule.objects.get(name="Unhandled error")
    assert post_report({"message": "Export crashed", "route": "/export"}).status_code == 202
    assert Issue.objects.get(title="Export crashed").severity == "P2"  # and the rules are now cached
    data = rendered_form_data(admin_client.get(f"/admin/healing/classificationrule/{rule.id}/change/"))
    data["severity"] = "P0"

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/healing/classificationrule/{rule.id}/change/", data)

    assert response.status_code == 302
    assert post_report({"message": "Import crashed", "route": "/import"}).status_code == 202
    issue = Issue.objects.get(title="Import crashed")
    assert (issue.severity, issue.rule_id) == ("P0", rule.id)
    entry = AuditEntry.objects.get(action="rule.update")
    assert (entry.actor, entry.target) == ("admin", f"rule:{rule.id}")
    assert entry.detail == {"before": {"severity": "P2"}, "after": {"severity": "P0"}}


def test_disabling_a_rule_from_the_list_takes_effect_and_is_audited(
    admin_client, direct_mode, post_report, django_capture_on_commit_callbacks
):
    assert post_report({"message": "Button did nothing", "type": "SILENT_FAILURE"}).status_code == 202
    assert Issue.objects.get().severity == "P1"
    response = admin_client.get("/admin/healing/classificationrule/")
    formset = response.context["cl"].formset
    data = form_data(formset.management_form, *formset.forms)
    silent = ClassificationRule.objects.get(name__startswith="Silent failure")
    index = next(i for i, form in enumerate(formset.forms) if form.instance.pk == silent.pk)
    del data[f"form-{index}-enabled"]

    with django_capture_on_commit_callbacks(execute=True):
        saved = admin_client.post("/admin/healing/classificationrule/", {**data, "_save": "Save"})

    assert saved.status_code == 302
    assert not ClassificationRule.objects.get(pk=silent.pk).enabled
    assert post_report({"message": "Link did nothing", "type": "SILENT_FAILURE", "route": "/other"}).status_code == 202
    assert Issue.objects.get(title="Link did nothing").severity == "P2"  # no rule matches any more
    entry = AuditEntry.objects.get(action="rule.update")
    assert entry.detail == {"before": {"enabled": True}, "after": {"enabled": False}}


def test_creating_and_deleting_a_rule_is_audited(admin_client, django_capture_on_commit_callbacks):
    fields = {"name": "Checkout down", "priority": "5", "enabled": "on", "message_regex": "checkout", "severity": "P0"}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert admin_client.post("/admin/healing/classificationrule/add/", fields).status_code == 302
    rule = ClassificationRule.objects.get(name="Checkout down")
    assert callbacks  # the rules cache is dropped once the row is committed
    created = AuditEntry.objects.get(action="rule.create")
    assert created.target == f"rule:{rule.id}"
    assert created.detail["after"]["message_regex"] == "checkout" and created.detail["after"]["severity"] == "P0"

    assert admin_client.post(f"/admin/healing/classificationrule/{rule.id}/delete/", {"post": "yes"}).status_code == 302
    assert not ClassificationRule.objects.filter(pk=rule.pk).exists()
    assert AuditEntry.objects.get(action="rule.delete").detail == {"name": "Checkout down"}


def test_an_invalid_rule_regex_is_refused(admin_client):
    rule = ClassificationRule.objects.get(name="Unhandled error")
    data = rendered_form_data(admin_client.get(f"/admin/healing/classificationrule/{rule.id}/change/"))
    data["message_regex"] = "(unclosed"

    response = admin_client.post(f"/admin/healing/classificationrule/{rule.id}/change/", data)

    assert response.status_code == 200
    assert "message_regex" in response.context["adminform"].form.errors
    assert not AuditEntry.objects.exists()


# --- Occurrences ----------------------------------------------------------------------------


def test_occurrences_are_read_only_and_searchable(admin_client):
    ana = OccurrenceFactory(user_id="u-42", user_email="ana@example.com", environment="production")
    bob = OccurrenceFactory(user_id="u-7", user_email="bob@example.com", environment="staging", source="sentry")

    def events(query):
        response = admin_client.get(f"/admin/healing/occurrence/?{query}")
        assert response.status_code == 200
        return {o.event_id for o in response.context["cl"].result_list}

    assert events("") == {ana.event_id, bob.event_id}
    assert events(f"q={bob.event_id}") == {bob.event_id}
    assert events("q=ANA@example.com") == {ana.event_id}
    assert events("q=u-7") == {bob.event_id}
    assert events("source=sentry") == {bob.event_id}
    assert events("environment=production") == {ana.event_id}
    page = admin_client.get(f"/admin/healing/occurrence/{ana.pk}/change/")
    assert page.status_code == 200
    assert "Report as received" in page.content.decode() and "&quot;message&quot;" in page.content.decode()
    assert admin_client.get("/admin/healing/occurrence/add/").status_code == 403
    assert admin_client.post(f"/admin/healing/occurrence/{ana.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Occurrence.objects.filter(pk=ana.pk).exists()
