"""Verification: replay the failing request against the sandbox before anyone gets the fix.

The request captured in the report is replayed 5× as the affected user and 5× as a generic
test account, with the fix's flag forced on for that user by a signed probe header (honoured by
the sandbox only). It passes at 10/10 with no new occurrence of the issue meanwhile.

The report holds no credentials (they are redacted at ingest, `healing.ingest.redact`), and none is
replayed: each replay names its account with an X-Kaizen-Sandbox-User header that Kaizen signs
for that one request (`flags.probes`), which the sandbox honours in place of the user's session.

What counts as "fixed": the replay answers 2xx and does not reproduce the failure — neither the
failing status again (a 2xx that did nothing, like a job accepted and dropped, reproduces too)
with the same state the user saw.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
from django.conf import settings

from flags.probes import PROBE, SANDBOX_USER, probe_sign, sandbox_user_sign
from healing.ingest.redact import REDACTED, is_credential_header, is_credential_param, value_redact

logger = logging.getLogger("kaizen.verify")

RUNS_PER_ACCOUNT = 5
GENERIC_ACCOUNT = "kaizen-probe"
TIMEOUT = (3.05, 10)  # connect, read
EXCERPT = 300
# Headers that describe one connection or one hop, not the request (RFC 9110 §7.6.1), or that a
# proxy added: copying them would misframe the replay or forge where it came from. The HTTP client
# sets its own Host, length and framing.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "upgrade", "te", "trailer", "transfer-encoding", "host", "content-length",
     "forwarded", "via", "expect", "x-real-ip"}
)  # fmt: skip
# Proxy-*, X-Forwarded-*, and Kaizen's own headers: only what Kaizen signs for this replay is sent.
NEVER_REPLAYED_PREFIXES = ("proxy-", "x-forwarded-", "x-kaizen-")


def replayable_header(name: str, value: str, *, connection_tokens: frozenset[str]) -> bool:
    """Whether a captured header goes into the replay: never a hop-by-hop or proxy header, one the
    request's Connection header named, a credential, or a value redacted at ingest."""
    lowered = name.lower()
    return not (
        lowered in HOP_BY_HOP
        or lowered in connection_tokens
        or lowered.startswith(NEVER_REPLAYED_PREFIXES)
        or is_credential_header(lowered)
        or value == REDACTED
    )


def _replay_headers(captured: Mapping[str, str]) -> dict[str, str]:
    connection = next((v for k, v in captured.items() if k.lower() == "connection"), "")
    tokens = frozenset(t.strip().lower() for t in str(connection).split(",") if t.strip())
    return {str(k): str(v) for k, v in captured.items() if replayable_header(str(k), str(v), connection_tokens=tokens)}


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
    path, _, inline_query = request["path"].partition("?")
    query = dict(parse_qsl(inline_query, keep_blank_values=True)) | dict(request.get("query") or {})
    return Replay(
        method=request["method"].upper(),
        path=path,
        # A credential parameter was redacted at ingest; sending "[redacted]" would only fail differently.
        query={k: v for k, v in query.items() if not is_credential_param(k) and v != REDACTED},
        headers=_replay_headers(request.get("headers") or {}),
        body=value_redact(request.get("body")),  # a payload stored before redaction existed holds them in clear
        failing_status=request.get("status"),
        failing_state=report.get("state"),
    )


def _as_account(headers: Mapping[str, str], *, affected: str, account: str) -> dict[str, str]:
    """The affected user's headers, re-addressed to `account` where one names the user. Whole values
    only: a user called "a" must not rewrite every header that contains the letter."""
    return {k: account if affected and v == affected else v for k, v in headers.items()}


def _judge(replay: Replay, status: int, data: Any) -> tuple[bool, str]:
    if status >= 400:
        return False, f"answered {status}"
    same_status = replay.failing_status is not None and status == replay.failing_status
    # A value redacted at ingest cannot be compared; the rest of the state still can.
    state = {k: v for k, v in (replay.failing_state or {}).items() if v != REDACTED}
    same_state = not state or (isinstance(data, dict) and all(data.get(k) == v for k, v in state.items()))
    if same_status and same_state:
        return False, f"reproduced the failure ({status}{', same state' if state else ''})"
    return True, f"answered {status}, failure not reproduced"


def _sandbox_request(*, replay: Replay, headers: Mapping[str, str]) -> requests.PreparedRequest:
    return requests.Request(
        replay.method,
        settings.KAIZEN_SANDBOX_URL.rstrip("/") + replay.path,
        params=dict(replay.query),
        headers=dict(headers),
        json=replay.body if replay.method not in ("GET", "HEAD") else None,
    ).prepare()


def probe_once(
    *, replay: Replay, project_id: int, account: str, user_id: str, affected: str, flag_key: str | None
) -> Probe:
    """One replay as `user_id`, signed for exactly the request sent (project, method, path)."""
    prepared = _sandbox_request(replay=replay, headers=_as_account(replay.headers, affected=affected, account=user_id))
    # What the sandbox sees as request.path: the URL's path, decoded, including any prefix in KAIZEN_SANDBOX_URL.
    path = unquote(urlsplit(prepared.url).path)
    bound = {"project_id": project_id, "method": replay.method, "path": path, "user_id": user_id}
    prepared.headers[SANDBOX_USER] = sandbox_user_sign(**bound)
    if flag_key:
        prepared.headers[PROBE] = probe_sign(flag_key=flag_key, **bound)
    started = time.perf_counter()
    try:
        with requests.Session() as session:
            response = session.send(prepared, timeout=TIMEOUT, allow_redirects=False)
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


def change_verify(*, replay: Replay | None, project_id: int, affected_user: str, flag_key: str | None,
                  occurrences_before: int, occurrences_now) -> Verdict:  # fmt: skip
    """Run the 5 + 5 replays. `occurrences_now` is called after them to count the occurrences the
    replays caused (any new one fails the verification)."""
    verdict = Verdict()
    if replay is None:
        verdict.reason = "the report captured no replayable request"
        return verdict
    for account, user_id in (("user", affected_user or GENERIC_ACCOUNT), ("generic", GENERIC_ACCOUNT)):
        for _ in range(RUNS_PER_ACCOUNT):
            probe = probe_once(replay=replay, project_id=project_id, account=account, user_id=user_id,
                               affected=affected_user, flag_key=flag_key)  # fmt: skip
            verdict.probes.append(probe)
    verdict.new_occurrences = occurrences_now() - occurrences_before
    if verdict.new_occurrences > 0:
        verdict.reason = f"{verdict.new_occurrences} new occurrences of the issue caused by the replays"
    logger.info("verification done", extra={"summary": verdict.summary(), "passed": verdict.passed})
    return verdict
