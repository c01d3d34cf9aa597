"""The demo page's JavaScript (healing/templates/demo/index.html), acted out over HTTP.

Tests drive the healing loop from the page's own reports: each scenario calls the demo exactly as
the page's `call()` does (the bearer token in the Authorization header, the user in X-Demo-User)
and posts exactly the body the page's `report()` builds, the way the browser sends it (text/plain,
the key in the query, the page's Origin). Nothing is added that the page does not send.
`MIRRORED` holds the page's lines these builders follow; a test checks they are still there.
"""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

TEMPLATE = Path(__file__).resolve().parents[1] / "healing" / "templates" / "demo" / "index.html"
MIRRORED = (
    'if (user) headers["X-Demo-User"] = user;',
    'if (token) headers["Authorization"] = "Bearer " + token;',
    "const request = { method, path, body: body || null, status: response.status, "
    "duration_ms: Math.round(performance.now() - started),",
    'headers: { "X-Demo-User": user || "" } };',
    "const body = Object.assign({ url: location.href, route: location.pathname, timeline: timeline.slice(),",
    'user: user ? { id: user } : undefined, session_id: sessionStorage.getItem("sid") }, problem);',
    'fetch("/api/v1/issues?key=" + encodeURIComponent(INGEST_KEY), { method: "POST", '
    'headers: { "Content-Type": "text/plain" }, body: JSON.stringify(body) })',
    'report({ type: "AUTH_ISSUE", message: "Session expired right after login", request: me.request });',
    'report({ type: "SILENT_FAILURE", message: "Clicked Generate and nothing happened", request });',
    'report({ type: "BILLING_ISSUE", message: "I paid for 100 credits but my balance still shows " '
    "+ answer.data.credits,",
    "request: answer.request, state: answer.data });",
    'const { response, data } = await call("POST", "/demo/api/purchase", { credits: 100 });',
    'const { data, request } = await call("POST", "/demo/api/generate", { prompt: $("prompt").value });',
)
SCENARIOS = ("generate", "credits", "session")


def template_lines_missing() -> list[str]:
    """The mirrored lines the page no longer has (whitespace-insensitive)."""
    page = " ".join(TEMPLATE.read_text().split())
    return [line for line in MIRRORED if " ".join(line.split()) not in page]


def captured_request(
    *, method: str, path: str, body: dict | None, status: int, duration_ms: int, user: str | None
) -> dict:
    """The `request` the page's `call()` records for a report: only X-Demo-User, never the token."""
    return {"method": method, "path": path, "body": body or None, "status": status, "duration_ms": duration_ms,
            "headers": {"X-Demo-User": user or ""}}  # fmt: skip


def report_body(*, base: str, user: str | None, session_id: str, timeline: list[dict], problem: dict) -> dict:
    """What the page's `report()` posts (JSON.stringify drops `user` when nobody is logged in)."""
    body = {"url": base + "/demo/", "route": "/demo/", "timeline": list(timeline), "session_id": session_id, **problem}
    return {**body, "user": {"id": user}} if user else body


class DemoPage:
    """One browser tab on the demo page at `base` (e.g. http://127.0.0.1:8000)."""

    def __init__(self, *, base: str, ingest_key: str):
        self.base = base.rstrip("/")
        self.ingest_key = ingest_key
        self.user: str | None = None
        self.token: str | None = None
        self.session_id = uuid.uuid4().hex[:11]  # sessionStorage "sid"
        self.timeline: list[dict] = []
        self.http = requests.Session()

    def track(self, target: str) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.timeline.append({"at": at, "action": "click", "target": target, "detail": ""})

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[requests.Response, dict, dict]:
        headers = {"Content-Type": "application/json"}
        if self.user:
            headers["X-Demo-User"] = self.user
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        response = self.http.request(
            method, self.base + path, headers=headers, data=json.dumps(body) if body else None, timeout=10
        )
        try:
            data = response.json()
        except ValueError:
            data = {}
        request = captured_request(method=method, path=path, body=body, status=response.status_code,
                                   duration_ms=round(response.elapsed.total_seconds() * 1000), user=self.user)  # fmt: skip
        return response, data, request

    def report(self, problem: dict) -> requests.Response:
        body = report_body(base=self.base, user=self.user, session_id=self.session_id, timeline=self.timeline,
                           problem=problem)  # fmt: skip
        return self.http.post(
            f"{self.base}/api/v1/issues",
            params={"key": self.ingest_key},
            data=json.dumps(body),
            headers={"Content-Type": "text/plain", "Origin": self.base},
            timeout=10,
        )

    # --- the page's buttons (each returns the report response, or None when nothing went wrong)

    def log_in(self, name: str) -> requests.Response | None:
        self.track("button#login")
        response, data, _ = self.call("POST", "/demo/api/login", {"user": name})
        if not response.ok:
            raise AssertionError(f"login failed: {response.status_code} {data}")
        self.user, self.token = data["user"], data["token"]
        me, _, request = self.call("GET", "/demo/api/me")
        if me.status_code == 401:
            return self.report(
                {"type": "AUTH_ISSUE", "message": "Session expired right after login", "request": request}
            )
        return None

    def generate(self, prompt: str = "a cat in a spacesuit") -> requests.Response | None:
        self.track("button#generate")
        _, data, request = self.call("POST", "/demo/api/generate", {"prompt": prompt})
        if data.get("result"):
            return None
        return self.report(
            {"type": "SILENT_FAILURE", "message": "Clicked Generate and nothing happened", "request": request}
        )

    def buy_credits(self) -> requests.Response | None:
        self.track("button#buy")
        response, data, _ = self.call("POST", "/demo/api/purchase", {"credits": 100})
        if not response.ok:
            raise AssertionError(f"purchase failed: {response.status_code} {data}")
        _, state, request = self.call("GET", "/demo/api/credits")
        if state.get("pending", 0) > 0:
            message = f"I paid for 100 credits but my balance still shows {state['credits']}"
            return self.report({"type": "BILLING_ISSUE", "message": message, "request": request, "state": state})
        return None

    def run_into(self, scenario: str) -> requests.Response | None:
        """Run into one scenario's bug after logging in; the report of that scenario, if any."""
        return {"generate": self.generate, "credits": self.buy_credits}[scenario]()

    def me(self) -> requests.Response:
        return self.call("GET", "/demo/api/me")[0]

    def sees_the_fix(self, scenario: str) -> bool:
        """What the user sees now: signed in, a picture generated, the credits paid for in the balance."""
        if scenario == "session":
            return self.me().status_code == 200
        if scenario == "generate":
            return bool(self.call("POST", "/demo/api/generate", {"prompt": "a cat in a spacesuit"})[1].get("result"))
        balance = self.call("GET", "/demo/api/credits")[1]
        return balance.get("pending") == 0 and balance.get("credits", 0) > 0
