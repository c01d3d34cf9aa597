"""Signing a browser into the Manager's Console, in one place: what it takes to get in (today a
staff session; a second factor when the console asks for one) changes here only."""

from django.test import Client


def console_login(context, *, base_url: str, user) -> None:
    """Give the Playwright browser `context` a signed-in console session for `user`."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base_url}])
