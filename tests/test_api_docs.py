"""/api/docs/ works without internet: Swagger UI's files come from the project, never a CDN."""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


class _Assets(HTMLParser):
    """Every URL the page makes the browser load: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"])
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"])


@pytest.fixture
def served_static(settings, tmp_path):
    """Static files as `make run` and production serve them: collected, then served by whitenoise."""
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    return Client()  # a new client builds its middleware, so whitenoise reads the new STATIC_ROOT


def test_the_docs_page_loads_only_local_assets_and_they_are_served(served_static):
    page = served_static.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    parser = _Assets()
    parser.feed(html)

    assert len(parser.urls) >= 4, parser.urls  # favicon, css, bundle, standalone preset
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} is loaded from another host"
        assert parts.path.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/"), url
    assert "cdn." not in html and "@latest" not in html

    for url in parser.urls:
        asset = served_static.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert len(body) > 100, url
    bundle = next(url for url in parser.urls if url.endswith("swagger-ui-bundle.js"))
    assert served_static.get(bundle)["Content-Type"].startswith(("text/javascript", "application/javascript"))


def test_the_page_points_swagger_ui_at_the_local_schema(client):
    html = client.get("/api/docs/").content.decode()
    assert '"/api/schema/"' in html
    assert client.get("/api/schema/", HTTP_ACCEPT="application/json").status_code == 200
