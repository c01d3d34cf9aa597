"""`make run`'s admin account is the owner's: kaizen_demo gives it the first owner address."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_demo_admin_carries_the_owner_address(settings, capsys):
    settings.KAIZEN_OWNER_EMAILS = ["owner@kaizen.localhost", "second@example.com"]
    call_command("kaizen_demo")
    assert get_user_model().objects.get(username="admin").email == "owner@kaizen.localhost"
    printed = capsys.readouterr().out
    assert "scan the QR code" in printed and "does not list" not in printed


def test_an_existing_admin_without_an_email_is_given_it(settings, capsys):
    get_user_model().objects.create_superuser("admin", "", "pw")
    settings.KAIZEN_OWNER_EMAILS = ["owner@kaizen.localhost"]
    call_command("kaizen_demo")
    assert get_user_model().objects.get(username="admin").email == "owner@kaizen.localhost"


def test_without_owner_addresses_the_command_says_the_console_will_refuse(settings, capsys):
    settings.KAIZEN_OWNER_EMAILS = []
    call_command("kaizen_demo")
    assert "KAIZEN_OWNER_EMAILS does not list owner@kaizen.localhost" in capsys.readouterr().out
