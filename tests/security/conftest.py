"""The four people the console's door tells apart, each with a test Client."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.owner import owner_create, owner_listed, owner_verify

ROLES = ("anonymous", "staff_not_owner", "owner_without_2fa", "owner_with_2fa")


@pytest.fixture
def owner(db, settings):
    owner_listed(settings)
    return owner_create()


@pytest.fixture
def role_client(owner, settings):
    """A Client signed in as each role. The staff account is a superuser with a confirmed device
    that passed 2FA: only its address is missing from KAIZEN_OWNER_EMAILS."""

    def make(role: str) -> Client:
        client = Client()
        if role == "anonymous":
            return client
        if role == "staff_not_owner":
            staff = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw")
            return owner_verify(client, staff)
        if role == "owner_without_2fa":
            client.force_login(owner)
            return client
        assert role == "owner_with_2fa", role
        return owner_verify(client, owner)

    return make
