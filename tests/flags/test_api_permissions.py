"""The owner API asks a console session for the same model permissions as the console itself.

Being staff opens the console's door only: editing or killing a flag needs `flags.change_flag`,
over the API as in the admin. Every refusal leaves the flag, its history and the audit log as
they were; every allowed change is recorded under the console user's name.
"""

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLResolver, get_resolver

from flags.api import FlagDetailView, FlagKillView
from flags.authentication import IsProjectOwner
from flags.models import Flag, FlagChange
from healing.models import AuditEntry
from tests.owner import OWNER_EMAIL, owner_listed, owner_verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _owner_listed(settings):
    """The console users here are the owner's accounts (their email is listed, they passed 2FA):
    what is left to tell them apart is their model permissions."""
    owner_listed(settings)


OWNER_WRITES = [  # every write of the owner API: (method, path, body)
    ("patch", "/api/v1/flags/half", {"rollout_percentage": 75, "why": "phase 2"}),
    ("post", "/api/v1/flags/half/kill", {"why": "checkout 500s"}),
]


@pytest.fixture
def half(make_flag):
    return make_flag(key="half", enabled=True, rollout_percentage=50)


def _staff(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user("ops", email=OWNER_EMAIL, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="flags", codename__in=codenames))
    return user


def _call(client: Client, project_key, method: str, path: str, body: dict):
    return getattr(client, method)(
        path, data=orjson.dumps(body), content_type="application/json", HTTP_X_KAIZEN_KEY=project_key.public_key
    )


def _state(flag: Flag) -> tuple:
    flag.refresh_from_db()
    return flag.enabled, flag.rollout_percentage, flag.killed, flag.updated_at


def _owner_views() -> list[type]:
    """Every view behind IsProjectOwner that the URLconf routes to."""
    found, pending = [], list(get_resolver().url_patterns)
    while pending:
        entry = pending.pop()
        if isinstance(entry, URLResolver):
            pending.extend(entry.url_patterns)
            continue
        view = getattr(entry.callback, "view_class", None)
        if view is not None and IsProjectOwner in getattr(view, "permission_classes", []):
            found.append(view)
    return found


def test_every_owner_api_write_names_existing_console_permissions():
    """The audit: each write method of each owner view asks for real model permissions. (A method
    a view does not name is refused to everyone, so a forgotten one fails closed.)"""
    views = _owner_views()
    assert set(views) == {FlagDetailView, FlagKillView}
    for view in views:
        writes = {m.upper() for m in ("post", "put", "patch", "delete") if hasattr(view, m)}
        assert writes and writes == set(view.owner_permissions), view
        for perms in view.owner_permissions.values():
            for perm in perms:
                app_label, codename = perm.split(".")
                assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), perm
    assert FlagDetailView.owner_permissions == {"PATCH": ["flags.change_flag"]}
    assert FlagKillView.owner_permissions == {"POST": ["flags.change_flag"]}


@pytest.mark.parametrize(("method", "path", "body"), OWNER_WRITES)
@pytest.mark.parametrize("codenames", [(), ("view_flag",), ("view_flag", "add_flag")])
def test_staff_without_change_flag_is_refused_and_nothing_changes(
    client, project_key, half, django_user_model, method, path, body, codenames
):
    owner_verify(client, _staff(django_user_model, *codenames))
    before = _state(half)
    history, audit = FlagChange.objects.count(), AuditEntry.objects.count()

    response = _call(client, project_key, method, path, body)

    assert response.status_code == 403, response.content
    assert response.json() == {
        "error": "permission_denied",
        "detail": "Your console account lacks the permission flags.change_flag this change needs.",
    }
    assert _state(half) == before
    assert (FlagChange.objects.count(), AuditEntry.objects.count()) == (history, audit)


def test_the_same_staff_user_is_refused_by_the_console(client, half, django_user_model):
    """The baseline the API now matches: no permission, no flag admin."""
    owner_verify(client, _staff(django_user_model))
    assert client.get(f"/admin/flags/flag/{half.pk}/change/").status_code == 403


def test_staff_with_change_flag_may_patch(client, project_key, half, django_user_model):
    owner_verify(client, _staff(django_user_model, "change_flag"))
    response = _call(client, project_key, *OWNER_WRITES[0])
    assert response.status_code == 200, response.content
    half.refresh_from_db()
    assert (half.rollout_percentage, half.enabled, half.killed) == (75, True, False)
    change = FlagChange.objects.get(flag=half, action="update")
    assert (change.actor, change.before, change.after) == (
        "ops",
        {"rollout_percentage": 50},
        {"rollout_percentage": 75},
    )
    assert AuditEntry.objects.filter(
        actor="ops", action="flag.update", target=f"flag:{half.project.slug}/half"
    ).exists()


def test_staff_with_change_flag_may_kill(client, project_key, half, django_user_model):
    owner_verify(client, _staff(django_user_model, "change_flag"))
    response = _call(client, project_key, *OWNER_WRITES[1])
    assert response.status_code == 200, response.content
    half.refresh_from_db()
    assert (half.killed, half.killed_by) == (True, "ops")
    assert AuditEntry.objects.filter(actor="ops", action="flag.kill").exists()


def test_a_superuser_holds_every_permission(client, project_key, half, django_user_model):
    owner_verify(client, django_user_model.objects.create_superuser("root", OWNER_EMAIL, "pw"))
    assert _call(client, project_key, *OWNER_WRITES[0]).status_code == 200
    assert Flag.objects.get(pk=half.pk).rollout_percentage == 75


def test_an_inactive_staff_user_with_the_permission_is_refused(client, project_key, half, django_user_model):
    user = _staff(django_user_model, "change_flag")
    owner_verify(client, user)
    user.is_active = False
    user.save()
    before = _state(half)
    assert _call(client, project_key, *OWNER_WRITES[0]).status_code == 403
    assert _state(half) == before


def test_the_projects_secret_key_needs_no_console_permission(client, project_key, half):
    """The secret key is the project's owner, not a console user."""
    response = client.patch(
        "/api/v1/flags/half",
        data=orjson.dumps({"enabled": False}),
        content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key,
        HTTP_AUTHORIZATION="Bearer secret",
    )
    assert response.status_code == 200, response.content
    assert Flag.objects.get(pk=half.pk).enabled is False


@pytest.mark.parametrize("method", ["put", "delete"])
def test_a_method_the_view_does_not_name_is_refused(client, project_key, half, django_user_model, method):
    owner_verify(client, django_user_model.objects.create_superuser("root", OWNER_EMAIL, "pw"))
    before = _state(half)
    response = _call(client, project_key, method, "/api/v1/flags/half", {"enabled": False})
    assert response.status_code in (403, 405)
    assert _state(half) == before


def test_the_console_kill_action_needs_change_flag(client, half, django_user_model):
    owner_verify(client, _staff(django_user_model, "view_flag"))
    response = client.post("/admin/flags/flag/", {"action": "kill_switch", "_selected_action": [half.pk]}, follow=True)
    assert response.status_code == 200
    half.refresh_from_db()
    assert half.killed is False and not FlagChange.objects.filter(action="kill").exists()
