"""The Manager's Console (Django admin): its header, projects and keys (shown once, rotated, audited)."""

import re

import pytest
from django import forms
from django.db import connection
from django.test.utils import CaptureQueriesContext

from healing.models import AuditEntry, Project, ProjectKey, hash_secret
from tests.factories import IssueFactory, ProjectKeyFactory

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"secret <code>([0-9a-f]{48})</code>")


def form_data(*form_list) -> dict:
    """What the browser posts back from these rendered forms, for a test to modify and send."""
    data = {}
    for form in form_list:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field, forms.BooleanField):
                if value:
                    data[form.add_prefix(name)] = "on"
            elif value is not None:
                data[form.add_prefix(name)] = value
            if field.show_hidden_initial and value is not None:  # fields with a callable default
                data[form.add_initial_prefix(name)] = value
    return data


def rendered_form_data(response) -> dict:
    """The post of a rendered admin change page, inline management forms included."""
    form_list = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        form_list += [inline.formset.management_form, *inline.formset.forms]
    return form_data(*form_list)


def test_console_has_its_own_header(admin_client):
    assert "Kaizen — Manager&#x27;s Console" in admin_client.get("/admin/").content.decode()


# --- Projects and keys ------------------------------------------------------------------------


def test_creating_a_project_issues_a_key_and_shows_its_secret_once(admin_client):
    response = admin_client.post(
        "/admin/healing/project/add/",
        {
            "name": "Shop",
            "slug": "shop",
            "allowed_origins": '["https://shop.example.com"]',
            "rate_limit_per_minute": "600",
            "is_active": "on",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
        follow=True,
    )

    assert response.status_code == 200
    project = Project.objects.get(slug="shop")
    key = ProjectKey.objects.get(project=project)
    assert key.is_active
    assert project.allowed_origins == ["https://shop.example.com"]
    page = response.content.decode()
    secret = SECRET.search(page).group(1)
    assert hash_secret(secret) == key.secret_hash
    assert page.count(secret) == 1
    assert f"<code>{key.public_key}</code>" in page
    assert f"<code>http://{key.public_key}@testserver/{project.id}</code>" in page
    assert AuditEntry.objects.filter(actor="admin", action="project.create", target="project:shop").exists()

    again = admin_client.get(f"/admin/healing/project/{project.id}/change/").content.decode()
    assert secret not in again
    assert key.secret_hash not in again
    assert key.public_key in again  # in the keys inline and the DSN
    assert f"http://{key.public_key}@testserver/{project.id}" in again


@pytest.mark.parametrize(
    "origins",
    ['"https://shop.example.com"', '["shop.example.com"]', "[42]", '["https://shop.example.com"'],
    ids=["not-a-list", "no-scheme", "not-a-string", "not-json"],
)
def test_allowed_origins_must_be_a_json_list_of_origins(admin_client, origins):
    response = admin_client.post(
        "/admin/healing/project/add/",
        {"name": "Shop", "slug": "shop", "allowed_origins": origins, "rate_limit_per_minute": "600",
         "keys-TOTAL_FORMS": "0", "keys-INITIAL_FORMS": "0"},
    )  # fmt: skip

    assert response.status_code == 200
    assert "allowed_origins" in response.context["adminform"].form.errors
    assert not Project.objects.exists()
    assert not ProjectKey.objects.exists()


def test_project_list_shows_the_active_key_and_issue_count_in_constant_queries(admin_client):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/admin/healing/project/").status_code == 200
        return len(queries)

    first = ProjectKeyFactory(project__name="Shop")
    ProjectKeyFactory(project=first.project, is_active=False)
    IssueFactory.create_batch(3, project=first.project)
    baseline = list_queries()
    for _ in range(5):
        IssueFactory(project=ProjectKeyFactory().project)

    response = admin_client.get("/admin/healing/project/")
    rows = {p.name: p for p in response.context["cl"].result_list}
    assert rows["Shop"].issue_total == 3
    assert rows["Shop"].active_key_public == first.public_key
    assert f"{first.public_key[:8]}…" in response.content.decode()
    assert list_queries() == baseline


def test_rotating_a_key_asks_first_then_revokes_the_old_key_and_shows_the_new_one(
    admin_client, project_key, post_report
):
    assert post_report({"message": "Checkout failed"}).status_code == 202
    action = {"action": "rotate_key", "_selected_action": [project_key.project_id]}

    confirm = admin_client.post("/admin/healing/project/", {**action, "index": "0"})
    assert confirm.status_code == 200
    assert "Yes, rotate" in confirm.content.decode()
    assert ProjectKey.objects.get(pk=project_key.pk).is_active  # nothing happened yet

    response = admin_client.post("/admin/healing/project/", {**action, "post": "yes"}, follow=True)

    old = ProjectKey.objects.get(pk=project_key.pk)
    new = ProjectKey.objects.get(project=project_key.project, is_active=True)
    assert not old.is_active and old.revoked_at is not None
    page = response.content.decode()
    assert f"<code>{new.public_key}</code>" in page
    assert hash_secret(SECRET.search(page).group(1)) == new.secret_hash
    assert AuditEntry.objects.filter(actor="admin", action="project.rotate_key").exists()

    refused = post_report({"message": "Checkout failed"})
    assert refused.status_code == 403, refused.content
    assert post_report({"message": "Checkout failed"}, key=new.public_key).status_code == 202


def test_projects_cannot_be_deleted_from_the_console(admin_client, project):
    response = admin_client.post(f"/admin/healing/project/{project.id}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()


def test_editing_a_project_is_audited(admin_client, project):
    page = admin_client.get(f"/admin/healing/project/{project.id}/change/")
    data = rendered_form_data(page)
    data["rate_limit_per_minute"] = "120"

    response = admin_client.post(f"/admin/healing/project/{project.id}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    entry = AuditEntry.objects.get(action="project.update")
    assert entry.detail == {"before": {"rate_limit_per_minute": 10_000}, "after": {"rate_limit_per_minute": 120}}
