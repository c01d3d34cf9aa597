"""The one fake of Anthropic's Messages endpoint: an httpx2.MockTransport under the real SDK, so
everything above the HTTP boundary (retries, error mapping, parsing) is the SDK's own code."""

import json

import httpx2


def ok(body: dict):
    return lambda request: httpx2.Response(200, json=body, headers={"request-id": "req_01"})


def error(status: int, kind: str, headers: dict | None = None):
    body = {"type": "error", "error": {"type": kind, "message": f"{kind} happened"}, "request_id": "req_err"}
    return lambda request: httpx2.Response(status, json=body, headers=headers or {})


def raising(exc_class):
    def respond(request):
        raise exc_class("simulated", request=request)

    return respond


class FakeAPI:
    """The Messages endpoint behind an httpx2.MockTransport: answers in turn (the last one
    repeats) and keeps every request it saw."""

    def __init__(self, *answers) -> None:
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        respond = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return respond(request)

    @property
    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))

    def body(self, index: int) -> dict:
        return json.loads(self.requests[index].content)
