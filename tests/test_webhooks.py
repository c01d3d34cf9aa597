"""The one outgoing-webhook client: signature, delivery id, timeouts, no redirects, and which
failures are worth retrying."""

import hashlib
import hmac
import json

import pytest
import requests
import responses

from kaizen_site import webhooks
from kaizen_site.webhooks import WebhookError, webhook_post, webhook_signature_valid

URL = "https://hooks.example.test/kaizen"


@responses.activate
def test_a_signed_call_carries_the_signature_of_the_raw_body_and_the_delivery_id():
    responses.add(responses.POST, URL, json={"ok": True})
    body = json.dumps({"a": 1}).encode()
    answer = webhook_post(url=URL, body=body, read_timeout=7, name="hook", secret="s3cret", delivery="d-1")

    (call,) = responses.calls
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert call.request.headers["X-Kaizen-Signature"] == expected
    assert call.request.headers["X-Kaizen-Delivery"] == "d-1"
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.req_kwargs["timeout"] == (webhooks.CONNECT_TIMEOUT, 7)
    assert answer.status == 200 and answer.json_object(name="hook") == {"ok": True}
    assert webhook_signature_valid(body=body, header=expected, secret="s3cret")
    assert not webhook_signature_valid(body=body + b" ", header=expected, secret="s3cret")


def test_a_redirect_is_not_followed(monkeypatch):
    seen = {}

    def post(url, **kwargs):
        seen.update(kwargs)
        raise requests.ConnectionError("stop here")

    monkeypatch.setattr(webhooks.requests, "post", post)
    with pytest.raises(WebhookError):
        webhook_post(url=URL, body=b"{}", read_timeout=5, name="hook")
    assert seen["allow_redirects"] is False  # requests would replay a 302 as a GET


@responses.activate
def test_an_unsigned_call_sends_no_signature():
    responses.add(responses.POST, URL, body="ok")  # Slack answers plain text
    answer = webhook_post(url=URL, body=b"{}", read_timeout=5, name="Slack")
    assert "X-Kaizen-Signature" not in responses.calls[0].request.headers
    assert answer.text == "ok"


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (400, False), (401, False), (404, False), (302, False)],
)
@responses.activate
def test_failures_say_whether_a_retry_may_help(status, transient):
    responses.add(responses.POST, URL, status=status, body="nope", headers={"Retry-After": "12"})
    with pytest.raises(WebhookError) as caught:
        webhook_post(url=URL, body=b"{}", read_timeout=5, name="hook")
    assert caught.value.transient is transient
    assert caught.value.status == status and caught.value.text == "nope"
    assert caught.value.retry_after == 12
    assert f"HTTP {status}" in str(caught.value)


@responses.activate
def test_a_timeout_and_a_refused_connection_are_transient():
    responses.add(responses.POST, URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(WebhookError) as slow:
        webhook_post(url=URL, body=b"{}", read_timeout=3, name="hook")
    assert slow.value.transient and "within 3 s" in str(slow.value)
    responses.replace(responses.POST, URL, body=requests.ConnectionError("refused"))
    with pytest.raises(WebhookError) as refused:
        webhook_post(url=URL, body=b"{}", read_timeout=3, name="hook")
    assert refused.value.transient and refused.value.status is None


@responses.activate
def test_an_answer_that_is_not_a_json_object_is_a_permanent_failure():
    responses.add(responses.POST, URL, body="[1, 2]")
    answer = webhook_post(url=URL, body=b"{}", read_timeout=5, name="hook")
    with pytest.raises(WebhookError) as caught:
        answer.json_object(name="hook")
    assert not caught.value.transient


def test_retry_after_as_an_http_date():
    assert webhooks._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert webhooks._retry_after("soon") is None
