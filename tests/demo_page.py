"""The demo page (healing/templates/demo/index.html) and its browser detector
(healing/static/kaizen/detector.js), acted out over HTTP.

Tests drive the healing loop from the reports the page sends: each scenario calls the demo exactly
as the page's `call()` does (the bearer token in the Authorization header, the user in X-Demo-User)
and posts the body the detector builds, the way the browser sends it (text/plain, the key in the
query, the page's Origin), in the session the server minted for the page. The detector reports the
session bug from the failed /demo/api/me and Generate as a click after which nothing happened; the
page reports the billing mismatch itself (`Kaizen.report`). Nothing is added that they do not send.
`MIRRORED` holds the lines of both files these builders follow; a test checks they are still there.
"""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "healing" / "templates" / "demo" / "index.html"
DETECTOR = ROOT / "healing" / "static" / "kaizen" / "detector.js"
MIRRORED = {
    TEMPLATE: (
        'if (user) headers["X-Demo-User"] = user;',
        'if (token) headers["Authorization"] = "Bearer " + token;',
        "const request = { method, path, body: body || null, status: response.status, "
        "duration_ms: Math.round(performance.now() - started),",
        'headers: { "X-Demo-User": user || "" } };',
        'data-capture-headers="X-Demo-User"',
        "if (window.Kaizen) Kaizen.identify({ id: user, name: user });",
        'const me = await call("GET", "/demo/api/me");',
        'const { data } = await call("POST", "/demo/api/generate", { prompt: $("prompt").value });',
        'if (data.result) $("result").textContent = data.result;',
        'const { response, data } = await call("POST", "/demo/api/purchase", { credits: 100 });',
        'const answer = await call("GET", "/demo/api/credits");',
        'Kaizen.report({ type: "BILLING_ISSUE", message: "I paid for 100 credits but my balance still shows " '
        "+ answer.data.credits,",
        'request: answer.request, state: answer.data, retry: "button#refresh" });',
    ),
    DETECTOR: (
        'method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify(body), credentials: "omit",',
        'return api("/api/v1/sessions", userBody()).then(function (r) {',
        "if (session) body.session_id = session.id;",
        "if (user && (user.id || user.email)) body.user = { id: user.id || undefined, email: user.email || undefined };",
        "body.url = cap(location.origin + pathOf(location.href), 2048);",
        "body.route = cap(location.pathname, 500);",
        "var captured = { method: req.method, path: path, body: req.body, status: status, duration_ms: req.duration_ms };",
        "if (req.headers) captured.headers = req.headers;",
        'var type = status === 401 || status === 403 ? "AUTH_ISSUE" : status === 402 ? "BILLING_ISSUE" : "ERROR";',
        'var what = status ? "answered " + status : "got no answer";',
        'report({ type: type, message: req.method + " " + path.split("?")[0] + " " + what + (detail ? ": " + detail : ""), '
        "request: captured },",
        "var text = d && (d.detail || d.message || d.error);",
        'report({ type: "SILENT_FAILURE", message: "Clicked " + (click.label ? "\\u201c" + click.label + "\\u201d" : target) '
        '+ " and nothing happened",',
        'track("click", target, el.matches && el.matches(CLICKABLE) ? label(el) : "");',
        "FIELDS.forEach(function (k) { if (problem[k] !== undefined) body[k] = problem[k]; });",
    ),
}
SCENARIOS = ("generate", "credits", "session")
BUTTONS = {"button#login": "Log in", "button#generate": "Generate", "button#buy": "Buy 100 credits",
           "button#refresh": "Refresh"}  # fmt: skip


def template_lines_missing() -> list[str]:
    """The mirrored lines the page or the detector no longer has (whitespace-insensitive)."""
    missing = []
    for path, lines in MIRRORED.items():
        text = " ".join(path.read_text().split())
        missing += [f"{path.name}: {line}" for line in lines if " ".join(line.split()) not in text]
    return missing


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def captured_request(
    *, method: str, path: str, body: dict | None, status: int, duration_ms: int, user: str | None
) -> dict:
    """The `request` a report carries (the detector's, or the page's `call()`): only X-Demo-User
    (the tag's data-capture-headers), never the token."""
    return {"method": method, "path": path, "body": body or None, "status": status, "duration_ms": duration_ms,
            "headers": {"X-Demo-User": user or ""}}  # fmt: skip


def report_body(*, base: str, user: str | None, session_id: str, timeline: list[dict], problem: dict) -> dict:
    """What the detector posts (no `user` until the page calls Kaizen.identify)."""
    body = {**problem, "event_id": str(uuid.uuid4()), "url": base + "/demo/", "route": "/demo/", "timestamp": _now(),
            "timeline": list(timeline), "console": [], "network": [], "session_id": session_id}  # fmt: skip
    return {**body, "user": {"id": user}} if user else body


class DemoPage:
    """One browser tab on the demo page at `base` (e.g. http://127.0.0.1:8000)."""

    def __init__(self, *, base: str, ingest_key: str):
        self.base = base.rstrip("/")
        self.ingest_key = ingest_key
        self.user: str | None = None
        self.token: str | None = None
        self.timeline: list[dict] = []
        self.http = requests.Session()
        self.session_id = self.session_open()

    def session_open(self) -> str:
        """The session the detector asks the server for as the page loads (the id is the server's)."""
        answer = self.http.post(f"{self.base}/api/v1/sessions", params={"key": self.ingest_key}, data="{}",
                                headers={"Content-Type": "text/plain", "Origin": self.base}, timeout=10)  # fmt: skip
        assert answer.status_code == 201, answer.text
        return answer.json()["session_id"]

    def track(self, action: str, target: str, detail: str = "") -> None:
        self.timeline.append({"at": _now(), "action": action, "target": target, "detail": detail})

    def click(self, target: str) -> None:
        self.track("click", target, BUTTONS[target])

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
        self.track("request", f"{method} {path}", str(response.status_code))
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

    def failed_request_report(self, response: requests.Response, request: dict) -> requests.Response:
        """The detector's report of a failed request, with the server's own words for it."""
        status = response.status_code
        kind = "AUTH_ISSUE" if status in (401, 403) else "BILLING_ISSUE" if status == 402 else "ERROR"
        try:
            detail = response.json().get("detail") or response.json().get("message") or response.json().get("error")
        except ValueError:
            detail = ""
        message = f"{request['method']} {request['path'].split('?')[0]} answered {status}" + (
            f": {detail}" if detail else ""
        )
        return self.report({"type": kind, "message": message, "request": request})

    # --- the page's buttons (each returns the report response, or None when nothing went wrong)

    def log_in(self, name: str) -> requests.Response | None:
        self.click("button#login")
        response, data, _ = self.call("POST", "/demo/api/login", {"user": name})
        if not response.ok:
            raise AssertionError(f"login failed: {response.status_code} {data}")
        self.user, self.token = data["user"], data["token"]  # and Kaizen.identify({id: user})
        me, _, request = self.call("GET", "/demo/api/me")
        if me.status_code == 401:
            return self.failed_request_report(me, request)
        return None

    def generate(self, prompt: str = "a cat in a spacesuit") -> requests.Response | None:
        """Generate: when the answer has no result the page changes nothing, and 3 s later the detector
        reports the click as a silent failure with the request behind it."""
        self.click("button#generate")
        _, data, request = self.call("POST", "/demo/api/generate", {"prompt": prompt})
        if data.get("result"):
            return None
        message = f"Clicked \u201c{BUTTONS['button#generate']}\u201d and nothing happened"
        return self.report({"type": "SILENT_FAILURE", "message": message, "request": request})

    def buy_credits(self) -> requests.Response | None:
        self.click("button#buy")
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
