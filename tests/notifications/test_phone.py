"""The console on the owner's phone: the manifest and the service worker (scope /admin/) that
Pusher Beams delivers web push through, and the page that turns push on or says it is off."""

import json

import pytest
from django.contrib.staticfiles import finders
from django.utils.html import escapejs

from notifications.channels.push_browser import BEAMS_MODULES, beams_installed

pytestmark = pytest.mark.django_db


def test_the_manifest_opens_the_console_as_an_app(client):
    answer = client.get("/admin/manifest.webmanifest")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/manifest+json"
    manifest = json.loads(answer.content)
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/admin/", "/admin/", "standalone")
    assert finders.find(manifest["icons"][0]["src"].removeprefix("/static/"))


@pytest.mark.skipif(not beams_installed(), reason="npm ci has not installed @pusher/push-notifications-web")
def test_the_service_worker_imports_beams_worker_from_this_server(client):
    worker = client.get("/admin/sw.js")
    assert worker.status_code == 200 and worker["Content-Type"] == "text/javascript"
    assert 'import "./push/beams/service-worker.js";' in worker.content.decode()
    assert "pusher.com/beams" not in worker.content.decode()  # never Pusher's CDN
    beams = client.get("/admin/push/beams/service-worker.js").content.decode()
    assert "addEventListener('push'" in beams and "from './do-request'" in beams
    for name in BEAMS_MODULES:  # its imports resolve here, by the extension-less names it uses
        assert client.get(f"/admin/push/beams/{name}").status_code == 200
    assert finders.find("kaizen/vendor/push-notifications-web/push-notifications-cdn.js")


@pytest.mark.parametrize("name", ["push-notifications", "package", "service-worker.test", "token-provider.js"])
def test_only_beams_worker_modules_are_served(client, name):
    assert client.get(f"/admin/push/beams/{name}").status_code == 404


def test_the_phone_page_says_push_is_off_without_beams(admin_client, settings):
    settings.KAIZEN_BEAMS_INSTANCE_ID = settings.KAIZEN_BEAMS_SECRET_KEY = ""
    page = admin_client.get("/admin/notifications/notification/phone/").content.decode()
    assert "Push is off: Pusher Beams is not configured" in page and "kaizen-push-on" not in page


@pytest.mark.skipif(not beams_installed(), reason="npm ci has not installed @pusher/push-notifications-web")
def test_the_phone_page_subscribes_this_device_with_beams(admin_client, admin_user, settings):
    settings.KAIZEN_BEAMS_INSTANCE_ID, settings.KAIZEN_BEAMS_SECRET_KEY = "instance-1", "beams-secret"
    page = admin_client.get("/admin/notifications/notification/phone/").content.decode()
    assert 'id="kaizen-push-on"' in page and '<link rel="manifest" href="/admin/manifest.webmanifest">' in page
    assert "/static/kaizen/vendor/push-notifications-web/push-notifications-cdn.js" in page
    assert f'"{escapejs(f"kaizen-user-{admin_user.pk}")}"' in page and '"instance\\u002D1"' in page


def test_the_phone_page_is_the_owners_only(client):
    assert client.get("/admin/notifications/notification/phone/").status_code == 302
