"""What the ingest tests share: constants, helpers and fixtures."""

import gzip
import types
import uuid
import zlib

import orjson
import pytest

from healing.ingest import accept

FROZEN_NOW = 1_700_000_000.0  # 20 s into a rate-limit window: Retry-After is 40


def envelope(*items, headers=None) -> bytes:
    """Items as (item header, payload); a dict payload is JSON. Newline-delimited unless the
    header gives a length, as SDKs write them."""
    parts = [orjson.dumps(headers if headers is not None else {})]
    for item_headers, payload in items:
        parts += [orjson.dumps(item_headers), orjson.dumps(payload) if isinstance(payload, dict) else payload]
    return b"\n".join(parts) + b"\n"


def sentry_event(**fields) -> dict:
    """An event as the Python SDK sends it for an exception raised while handling a request."""
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": "2024-05-01T12:00:00.123456Z",
        "platform": "python",
        "level": "error",
        "logger": "django.request",
        "server_name": "web-1",
        "release": "shop@1.2.3",
        "environment": "production",
        "transaction": "/checkout/{order_id}",
        "request": {"url": "https://shop.example.com/checkout/42", "method": "POST", "data": {"card": "[Filtered]"}},
        "user": {"id": "u-42", "email": "ada@example.com", "ip_address": "10.0.0.1"},
        "tags": {"region": "eu"},
        "breadcrumbs": {
            "values": [
                {"timestamp": 1714564799.5, "category": "http", "message": "POST /api/pay", "data": {"secret": "x"}},
                {"timestamp": "2024-05-01T11:59:59.900Z", "type": "default", "level": "info"},
            ]
        },
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": "'sku'",
                    "mechanism": {"type": "chained", "handled": True},
                    "stacktrace": {
                        "frames": [{"module": "shop.cart", "function": "line_items", "lineno": 7, "in_app": True}]
                    },
                },
                {
                    "type": "CheckoutFailed",
                    "value": "payment failed",
                    "module": "shop.errors",
                    "mechanism": {"type": "django", "handled": False},
                    "stacktrace": {
                        "frames": [
                            {
                                "module": "django.core.handlers.base",
                                "function": "_get_response",
                                "filename": "django/core/handlers/base.py",
                                "abs_path": "/venv/site-packages/django/core/handlers/base.py",
                                "lineno": 197,
                                "in_app": False,
                            },
                            {
                                "module": "shop.views",
                                "function": "checkout",
                                "filename": "shop/views.py",
                                "lineno": 42,
                                "in_app": True,
                                "context_line": "    raise CheckoutFailed('payment failed')",
                                "vars": {"order_id": "42"},
                            },
                        ]
                    },
                },
            ]
        },
        **fields,
    }


@pytest.fixture
def frozen_clock(monkeypatch):
    """One fixed rate-limit window, so a test never straddles two."""
    monkeypatch.setattr(accept, "time", types.SimpleNamespace(time=lambda: FROZEN_NOW))


@pytest.fixture
def send(client, project_key):
    """POST a body to the project's Sentry endpoint; auth in the header (the Python SDK's way) by default."""

    def post(
        body: bytes,
        *,
        endpoint="envelope",
        project_id=None,
        key=None,
        auth="header",
        encoding=None,
        content_type="application/x-sentry-envelope",
        **headers,
    ):
        key = key or project_key.public_key
        path = f"/api/{project_id or project_key.project_id}/{endpoint}/"
        if auth == "header":
            headers["X-Sentry-Auth"] = f"Sentry sentry_version=7, sentry_client=sentry.python/2.0.0, sentry_key={key}"
        elif auth == "query":
            path += f"?sentry_key={key}&sentry_version=7&sentry_client=sentry.javascript.browser%2F8.0.0"
        if encoding == "gzip":
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        elif encoding == "deflate":
            body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
        return client.post(path, data=body, content_type=content_type, headers=headers)

    return post


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
