"""The permission matrix: anonymous, staff who is not the owner, the owner without 2FA and the
owner with 2FA, on every admin page that takes no object id and on every owner API.

Only the last one gets in. The pages are found by walking the admin site's URLs, so a page or an
API added later is in the matrix without anyone listing it here."""

import re

import orjson
import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

from flags.authentication import IsProjectOwner
from kaizen_site.security.permissions import IsConsoleOwner
from tests.security.conftest import ROLES

pytestmark = pytest.mark.django_db

# The sign-in steps themselves: every role may see them (they are the door, not the room).
SIGN_IN = {"login", "logout", "two_factor", "two_factor_setup", "two_factor_sign_out"}


def _no_argument_routes(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _no_argument_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            route = str(entry.pattern)
            if entry.pattern.converters or re.search(r"[(\\^$]", route):  # needs an argument (an id, a regex)
                continue
            yield entry.name, "/admin/" + prefix + route


DUMMY = {"int": "1", "str": "x", "path": "x", "slug": "x", "uuid": "00000000-0000-0000-0000-000000000001"}


def _argument_routes(patterns, prefix: str = ""):
    """Every admin route with an object id or a name in it, filled with a placeholder: the door
    is checked before the object is looked up, so a missing one still must answer the login page."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _argument_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.pattern.converters and entry.name not in SIGN_IN:
            route = prefix + str(entry.pattern)
            for name, converter in entry.pattern.converters.items():
                kind = type(converter).__name__.removesuffix("Converter").lower()
                route = re.sub(rf"<(?:\w+:)?{name}>", DUMMY.get(kind, "1"), route)
            if "<" not in route:
                yield "/admin/" + route


def admin_pages() -> list[tuple[str, str]]:
    pages = sorted({(name or path, path) for name, path in _no_argument_routes(admin.site.get_urls())})
    return [(name, path) for name, path in pages if name not in SIGN_IN]


def test_the_matrix_covers_every_registered_model_and_the_custom_pages():
    paths = {path for _, path in admin_pages()}
    for model in admin.site._registry:
        meta = model._meta
        assert f"/admin/{meta.app_label}/{meta.model_name}/" in paths
        assert f"/admin/{meta.app_label}/{meta.model_name}/add/" in paths
    assert {"/admin/", "/admin/notifications/notification/channels/", "/admin/research/proposal/enhancements/"} <= paths


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_page_admits_only_the_verified_owner(role, role_client):
    client = role_client(role)
    refused = {}
    for name, path in admin_pages():
        response = client.get(path)
        if role == "owner_with_2fa":
            assert response.status_code < 500, (path, response.status_code)
            assert not response.get("Location", "").startswith("/admin/login/"), path
            if name.endswith("_changelist") or path == "/admin/":
                assert response.status_code == 200, (path, response.status_code)
        else:
            refused[path] = response.status_code, response.get("Location", "")
    if role != "owner_with_2fa":
        for path in sorted(set(_argument_routes(admin.site.get_urls()))):
            response = client.get(path)
            refused[path] = response.status_code, response.get("Location", "")
        assert len(refused) > len(admin_pages()) and all(
            code == 302 and location.startswith("/admin/login/") for code, location in refused.values()
        ), {path: answer for path, answer in refused.items() if answer[0] != 302}


def owner_apis() -> list[tuple[str, type]]:
    """(route, view class) of every API view behind the owner's console session or the owner key."""
    found = []

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
                continue
            view = getattr(entry.callback, "view_class", None)
            classes = getattr(view, "permission_classes", None) or []
            if view is not None and ({IsConsoleOwner, IsProjectOwner} & set(classes)):
                found.append((prefix + str(entry.pattern), view))

    walk(get_resolver().url_patterns)
    return found


# One call per owner API method, with a valid body: (method, path, body).
OWNER_CALLS = [
    ("get", "/api/v1/notifications", None),
    ("post", "/api/v1/notifications/read", {"all": True}),
    ("post", "/api/v1/notifications/devices", {"device_id": "phone-1", "platform": "web", "name": "Phone"}),
    ("get", "/api/v1/notifications/preferences", None),
    ("patch", "/api/v1/notifications/preferences", {"quiet_hours": {"enabled": False}}),
    ("get", "/api/v1/notifications/beams-token", None),
    ("patch", "/api/v1/flags/matrix", {"rollout_percentage": 60, "why": "matrix"}),
    ("post", "/api/v1/flags/matrix/kill", {"why": "matrix"}),
]


def test_the_owner_call_list_covers_every_owner_api():
    routes = {re.sub(r"<[^>]+>", "X", route) for route, _ in owner_apis()}
    called = {re.sub(r"/matrix", "/X", path).removeprefix("/") for _, path, _ in OWNER_CALLS}
    assert routes == called


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body"), OWNER_CALLS, ids=[f"{m} {p}" for m, p, _ in OWNER_CALLS])
def test_every_owner_api_admits_only_the_verified_owner(role, role_client, project_key, method, path, body):
    from flags.services import flag_create

    flag_create(project=project_key.project, key="matrix", description="", enabled=True, actor="test")
    client = role_client(role)
    kwargs = {"HTTP_X_KAIZEN_KEY": project_key.public_key, "content_type": "application/json"}
    if body is not None:
        kwargs["data"] = orjson.dumps(body) if method != "get" else body
    response = getattr(client, method)(path, **kwargs)
    if role == "owner_with_2fa":
        # Beams is not configured here: its token endpoint answers 503, past the door.
        assert response.status_code not in (401, 403), (path, response.content)
        assert response.status_code < 500 or path.endswith("beams-token"), response.content
    else:
        assert response.status_code in (401, 403), (path, response.status_code)
        assert set(response.json()) == {"error", "detail"}
