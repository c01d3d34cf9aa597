"""Console sessions: 24 hours from sign-in, recorded as AdminSession rows, revocable by the owner."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from healing.models import AuditEntry
from kaizen_site.models import AdminSession
from tests.owner import owner_verify

pytestmark = pytest.mark.django_db


def test_sessions_last_24_hours(settings, admin_user):
    assert settings.SESSION_COOKIE_AGE == 24 * 3600
    client = Client()
    answer = client.post("/admin/login/", {"username": "admin", "password": "owner-password"},
                         HTTP_USER_AGENT="Phone/1.0")  # fmt: skip
    assert answer.status_code == 302
    assert answer.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 24 * 3600
    row = AdminSession.objects.get(user=admin_user)
    assert row.ip == "127.0.0.1" and row.user_agent == "Phone/1.0" and len(row.fingerprint) == 64
    assert row.expires_at - row.created_at == timedelta(hours=24) and row.active


def test_a_session_is_signed_out_once_its_24_hours_are_over(admin_client):
    assert admin_client.get("/admin/").status_code == 200
    with freeze_time(timezone.now() + timedelta(hours=24, seconds=1)):
        answer = admin_client.get("/admin/")
    assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/")
    assert "_auth_user_id" not in admin_client.session


def test_a_session_past_its_row_expiry_is_signed_out_even_if_django_kept_it(admin_client):
    AdminSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert admin_client.get("/admin/").status_code == 302
    assert admin_client.get("/api/v1/notifications").status_code == 403


def test_the_owner_revokes_a_session_and_that_browser_is_signed_out(admin_user):
    laptop, phone = owner_verify(Client(), admin_user), owner_verify(Client(), admin_user)
    laptop_row = AdminSession.objects.get(session_key=laptop.session.session_key)
    answer = phone.post("/admin/kaizen_site/adminsession/",
                        {"action": "revoke", "_selected_action": [laptop_row.pk]})  # fmt: skip
    assert answer.status_code == 302
    laptop_row.refresh_from_db()
    assert laptop_row.revoked_at is not None and laptop_row.revoked_by == "admin" and not laptop_row.active
    assert laptop.get("/admin/").status_code == 302
    assert phone.get("/admin/").status_code == 200
    assert AuditEntry.objects.filter(action="console.session_revoke", target=f"admin_session:{laptop_row.pk}",
                                     ip="127.0.0.1").exists()  # fmt: skip
    assert AuditEntry.objects.filter(action="admin.action", detail__action="revoke").exists()


def test_sessions_are_read_only_in_the_console(admin_client):
    row = AdminSession.objects.get()
    assert admin_client.get("/admin/kaizen_site/adminsession/").status_code == 200
    assert admin_client.get("/admin/kaizen_site/adminsession/add/").status_code == 403
    assert admin_client.post(f"/admin/kaizen_site/adminsession/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AdminSession.objects.filter(pk=row.pk).exists()
