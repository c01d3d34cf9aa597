"""Verification: replay the failing request against the sandbox before anyone gets the fix.

The request captured in the report is replayed 5× as the affected user and 5× as a generic
test account, with the fix's flag forced on for that user by a signed probe header (honoured by
the sandbox only). It passes at 10/10 with no new occurrence of the issue meanwhile.

What counts as "fixed": the replay answers 2xx and does not reproduce the failure — neither the
failing status again (a 2xx that did nothing, like a job accepted and dropped, reproduces too)
with the same state the user saw.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings

from flags.probes import probe_sign

logger = logging.getLogger("kaizen.verify")

RUNS_PER_ACCOUNT = 5
GENERIC_ACCOUNT = "kaizen-probe"
TIMEOUT = (3.05, 10)  # connect, read
EXCERPT = 300
# Hop-by-hop and credential-carrying headers the replay must not copy from the report.
DROP_HEADERS = {"host", "content-length", "connection", "cookie", "x-kaizen-probe", "x-kaizen-key"}


@dataclass(frozen=True)
class Replay:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    failing_status: int | None
    failing_state: Mapping[str, Any] | None


@dataclass(frozen=True)
class Probe:
    account: str  # "user" or "generic"
    user_id: str
    status: int | None
    latency_ms: float
    passed: bool
    assertion: str
    excerpt: str


@dataclass
class Verdict:
    probes: list[Probe] = field(default_factory=list)
    new_occurrences: int = 0
    reason: str = ""

    @property
    def passed(self) -> bool:
        return not self.reason and len(self.probes) == 2 * RUNS_PER_ACCOUNT and all(p.passed for p in self.probes)

    def summary(self) -> str:
        good = sum(p.passed for p in self.probes)
        return f"{good}/{len(self.probes)} replays passed" + (f"; {self.reason}" if self.reason else "")


def replay_of(report: Mapping[str, Any]) -> Replay | None:
    """The replayable request a report captured, or None when it has none."""
    request = report.get("request")
    if not request or not request.get("path", "").startswith("/"):
        return None
    return Replay(
        method=request["method"].upper(),
        path=request["path"],
        query=request.get("query") or {},
        headers={k: v for k, v in (request.get("headers") or {}).items() if k.lower() not in DROP_HEADERS},
        body=request.get("body"),
        failing_status=request.get("status"),
        failing_state=report.get("state"),
    )


def _as_account(headers: Mapping[str, str], *, affected: str, account: str) -> dict[str, str]:
    """The affected user's headers, re-addressed to `account` wherever they name the user."""
    return {k: v.replace(affected, account) if affected else v for k, v in headers.items()}


def _judge(replay: Replay, status: int, data: Any) -> tuple[bool, str]:
    if status >= 400:
        return False, f"answered {status}"
    same_status = replay.failing_status is not None and status == replay.failing_status
    state = replay.failing_state
    same_state = not state or (isinstance(data, dict) and all(data.get(k) == v for k, v in state.items()))
    if same_status and same_state:
        return False, f"reproduced the failure ({status}{', same state' if state else ''})"
    return True, f"answered {status}, failure not reproduced"


def probe_once(*, replay: Replay, account: str, user_id: str, affected: str, flag_key: str | None) -> Probe:
    headers = _as_account(replay.headers, affected=affected, account=user_id)
    if flag_key:
        headers["X-Kaizen-Probe"] = probe_sign(flag_key=flag_key, user_id=user_id)
    url = (
        settings.KAIZEN_SANDBOX_URL.rstrip("/") + replay.path + (f"?{urlencode(replay.query)}" if replay.query else "")
    )
    started = time.perf_counter()
    try:
        response = requests.request(
            replay.method,
            url,
            headers=headers,
            json=replay.body if replay.method not in ("GET", "HEAD") else None,
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        latency = (time.perf_counter() - started) * 1000
        return Probe(account, user_id, None, latency, False, f"sandbox unreachable: {exc}", "")
    latency = (time.perf_counter() - started) * 1000
    try:
        data = response.json()
    except ValueError:
        data = None
    passed, assertion = _judge(replay, response.status_code, data)
    return Probe(account, user_id, response.status_code, latency, passed, assertion, response.text[:EXCERPT])


def change_verify(*, replay: Replay | None, affected_user: str, flag_key: str | None, occurrences_before: int,
                  occurrences_now) -> Verdict:  # fmt: skip
    """Run the 5 + 5 replays. `occurrences_now` is called after them to see whether the issue
    occurred again meanwhile (any new occurrence fails the verification)."""
    verdict = Verdict()
    if replay is None:
        verdict.reason = "the report captured no replayable request"
        return verdict
    for account, user_id in (("user", affected_user or GENERIC_ACCOUNT), ("generic", GENERIC_ACCOUNT)):
        for _ in range(RUNS_PER_ACCOUNT):
            verdict.probes.append(
                probe_once(replay=replay, account=account, user_id=user_id, affected=affected_user, flag_key=flag_key)
            )
    verdict.new_occurrences = occurrences_now() - occurrences_before
    if verdict.new_occurrences > 0:
        verdict.reason = f"{verdict.new_occurrences} new occurrences of the issue while verifying"
    logger.info("verification done", extra={"summary": verdict.summary(), "passed": verdict.passed})
    return verdict
