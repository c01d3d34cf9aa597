"""The one client for outgoing webhooks: owners' remediation hooks, the patch executor, and the
owner's chat channels (Slack, Discord).

A signed call carries `X-Kaizen-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, as GitHub
signs its webhooks (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries),
and `X-Kaizen-Delivery`, the id a receiver deduplicates on. Every call has explicit connect and
read timeouts, follows no redirect, and fails with one error that says whether trying again may help.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

SIGNATURE_HEADER = "X-Kaizen-Signature"
DELIVERY_HEADER = "X-Kaizen-Delivery"
CONNECT_TIMEOUT = 5.0  # seconds; the read timeout is the caller's
EXCERPT_CHARS = 500  # of an answer, kept for the console


def webhook_signature(body: bytes, *, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signature_valid(*, body: bytes, header: str, secret: str) -> bool:
    """For a receiver (the demo product): constant-time, so the signature can't be guessed byte by byte."""
    return hmac.compare_digest(webhook_signature(body, secret=secret).encode(), (header or "").encode())


class WebhookError(Exception):
    """A call that did not succeed. `transient`: a timeout, a network error, 5xx or 429 — worth
    retrying; anything else is permanent. `retry_after` is the receiver's own wait, in seconds."""

    def __init__(
        self, message: str, *, transient: bool, status: int | None = None, text: str = "", duration_ms: int = 0,
        retry_after: float | None = None,
    ) -> None:  # fmt: skip
        self.reason, self.transient, self.status, self.text = message, transient, status, text
        self.duration_ms, self.retry_after = duration_ms, retry_after
        super().__init__(f"{message} ({'transient' if transient else 'permanent'})")


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    text: str
    duration_ms: int

    def json_object(self, *, name: str) -> dict[str, Any]:
        """The answer as a JSON object; a receiver that answered otherwise may or may not have done the work,
        so it is reported as a permanent failure for a person to look at, never retried blindly."""
        try:
            data = json.loads(self.text)
        except ValueError as exc:
            raise WebhookError(f"{name} answered {self.status} but not with JSON", transient=False,
                               status=self.status, text=self.text[:EXCERPT_CHARS]) from exc  # fmt: skip
        if not isinstance(data, dict):
            raise WebhookError(f"{name} answered with JSON that is not an object", transient=False,
                               status=self.status, text=self.text[:EXCERPT_CHARS])  # fmt: skip
        return data


def _retry_after(value: str | None) -> float | None:
    """Retry-After is seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def webhook_post(
    *,
    url: str,
    body: bytes,
    read_timeout: float,
    name: str,
    secret: str = "",
    delivery: str = "",
    headers: Mapping[str, str] | None = None,
) -> WebhookAnswer:
    """POST `body` (JSON) to `url`; the answer when it is a 2xx, else WebhookError."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if secret:
        sent[SIGNATURE_HEADER] = webhook_signature(body, secret=secret)
    if delivery:
        sent[DELIVERY_HEADER] = delivery
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        # No redirects: requests would replay a 302 as a GET, and the call would do nothing.
        response = requests.post(url, data=body, headers=sent, timeout=(CONNECT_TIMEOUT, read_timeout),
                                 allow_redirects=False)  # fmt: skip
    except requests.Timeout as exc:
        raise WebhookError(f"{name} did not answer within {read_timeout:g} s", transient=True,
                           duration_ms=elapsed()) from exc  # fmt: skip
    except requests.RequestException as exc:
        raise WebhookError(f"could not reach {name}: {exc}", transient=True, duration_ms=elapsed()) from exc
    text = response.text
    if not 200 <= response.status_code < 300:
        raise WebhookError(
            f"{name} answered HTTP {response.status_code}",
            transient=response.status_code >= 500 or response.status_code == 429,
            status=response.status_code,
            text=text[:EXCERPT_CHARS],
            duration_ms=elapsed(),
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    return WebhookAnswer(status=response.status_code, text=text, duration_ms=elapsed())
