"""The Sentry protocol: a stock Sentry SDK, its DSN pointed at Kaizen, reports its errors here.

Reads the SDK's auth and envelopes and turns a Sentry event into a native report, so everything
after (validation, grouping, storage) is the native path. Only error events become reports; the
other item types SDKs send (transactions, sessions, client reports, attachments...) are accepted
and dropped, because an SDK retries or logs what we refuse.
https://develop.sentry.dev/sdk/data-model/envelopes/
https://develop.sentry.dev/sdk/data-model/event-payloads/
"""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from healing import metrics
from healing.ingest import accept
from healing.ingest.errors import IngestError, too_large

# Item types that carry an error event. `security` is a CSP (or similar) report that Sentry has
# already shaped as an event.
ISSUE_ITEM_TYPES = frozenset({"event", "security"})
# Item types current SDKs send that hold no error. Anything else is counted as "other", so a
# client cannot grow the metric's label set.
IGNORED_ITEM_TYPES = frozenset({
    "transaction", "session", "sessions", "client_report", "attachment", "profile", "profile_chunk",
    "replay_event", "replay_recording", "replay_video", "check_in", "statsd", "metric_buckets", "span",
    "otel_span", "log", "otel_log", "trace_metric", "user_report", "feedback", "form_data", "raw_security", "nel",
})  # fmt: skip
MAX_ITEMS = 1000  # SDKs send a handful; this only bounds the work an unauthenticated tunnel body can cause
MAX_TAGS = 100
MAX_FRAMES = 200  # IssueReport's caps: keep the newest frames and breadcrumbs, they matter most
MAX_TIMELINE = 200
UNLABELED = "<unlabeled event>"  # what Sentry shows for an event with neither message nor exception
_DEFAULT_MARKER = re.compile(r"^\{\{\s*default\s*\}\}$")


@dataclass(frozen=True)
class Item:
    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: tuple[Item, ...]


# --- Auth -------------------------------------------------------------------------------------
# https://develop.sentry.dev/sdk/overview/#authentication


def auth_fields(header: str) -> dict[str, str]:
    """`Sentry sentry_version=7, sentry_key=abc, sentry_client=x/1.0` → {"sentry_key": "abc", ...}."""
    header = header.strip()
    if header[:7].lower() == "sentry ":
        header = header[7:]
    fields = {}
    for part in header.split(","):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip().strip('"')
    return fields


def auth_key(*, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The public key from `X-Sentry-Auth`, a `Sentry ...` Authorization header, or `?sentry_key=`
    (the browser SDK's form: no custom header, so no CORS preflight)."""
    header = headers.get("X-Sentry-Auth") or ""
    authorization = headers.get("Authorization") or ""
    if not header and authorization[:7].lower() == "sentry ":
        header = authorization
    return auth_fields(header).get("sentry_key") or query.get("sentry_key") or ""


def dsn_key(dsn: Any) -> str:
    """The public key of a DSN (`https://<key>@host/<project id>`); envelopes relayed through an
    app's own tunnel endpoint carry it in their header instead of any auth."""
    if not isinstance(dsn, str):
        return ""
    try:
        return urlsplit(dsn).username or ""
    except ValueError:
        return ""


def rate_limits_header(*, retry_after: int) -> str:
    """`X-Sentry-Rate-Limits`: every category (empty list), the whole project, for `retry_after` s.
    https://develop.sentry.dev/sdk/expected-features/rate-limiting/"""
    return f"{retry_after}::project"


# --- Envelopes --------------------------------------------------------------------------------


def _line(body: bytes, pos: int) -> tuple[bytes, int]:
    end = body.find(b"\n", pos)
    if end == -1:
        return body[pos:], len(body)
    return body[pos:end], end + 1


def _json_object(data: bytes, *, code: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise IngestError(code, f"{what} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise IngestError(code, f"{what} must be a JSON object.")
    return value


def envelope_parse(body: bytes, *, max_event_bytes: int) -> Envelope:
    """Split an envelope into its header and items. An item's payload is exactly `length` bytes
    when its header says so (attachments are binary and may hold newlines), else the rest of the
    line. Anything malformed is a 400: guessing where an item ends could store garbage."""
    if not body.strip():
        raise IngestError("empty_envelope", "The envelope is empty.")
    line, pos = _line(body, 0)
    headers = _json_object(line, code="invalid_envelope_header", what="The envelope header")
    items: list[Item] = []
    while pos < len(body):
        line, pos = _line(body, pos)
        if not line.strip():
            if body[pos:].strip():
                raise IngestError("invalid_item_header", f"Item {len(items) + 1}: a blank line instead of a header.")
            break  # trailing newlines
        item_headers = _json_object(line, code="invalid_item_header", what=f"Item {len(items) + 1}'s header")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise IngestError("invalid_item_header", f"Item {len(items) + 1}'s header has no type.")
        length = item_headers.get("length")
        if length is None:
            payload, pos = _line(body, pos)
        else:
            if type(length) is not int or length < 0:  # bool is an int; 2.0 is not a length
                raise IngestError("invalid_item_length", f"Item {len(items) + 1}'s length is not a byte count.")
            payload = body[pos : pos + length]
            if len(payload) < length:
                raise IngestError("truncated_envelope", f"Item {len(items) + 1} is shorter than its length.")
            pos += length
            if pos < len(body):
                if body[pos : pos + 1] != b"\n":
                    raise IngestError("invalid_envelope", f"Item {len(items) + 1} is longer than its length.")
                pos += 1
        if item_type in ISSUE_ITEM_TYPES and len(payload) > max_event_bytes:
            raise too_large(f"The {item_type} item of {len(payload)} bytes is over the {max_event_bytes}-byte limit.")
        items.append(Item(type=item_type, headers=item_headers, payload=payload))
        if len(items) > MAX_ITEMS:
            raise IngestError("too_many_items", f"An envelope holds at most {MAX_ITEMS} items.")
    return Envelope(headers=headers, items=tuple(items))


def event_parse(payload: bytes) -> dict[str, Any]:
    # No depth or NUL check as for native bodies: orjson bounds the recursion, the conversion
    # reads fixed paths only, and it strips NULs from what it keeps; SDK data is not ours to refuse.
    return _json_object(payload, code="invalid_event", what="The event")


def envelope_reports(*, envelope: Envelope) -> list[dict[str, Any]]:
    """The validated native reports of an envelope's error events (usually one, or none).

    Each event keeps its own id. The envelope header's `event_id` names the envelope's one event
    (SDKs send one per envelope), so it stands in only for the first event lacking an id; any
    other event without one gets a fresh id: sharing one would store one event of many.
    """
    reports, outcomes = [], []
    header_id = envelope.headers.get("event_id")
    for item in envelope.items:
        if item.type in ISSUE_ITEM_TYPES:
            event = event_parse(item.payload)
            reports.append(event_report(event=event, event_id=header_id if not reports else None))
            outcomes.append((item.type, "report"))
        else:
            outcomes.append((item.type if item.type in IGNORED_ITEM_TYPES else "other", "ignored"))
    for item_type, outcome in outcomes:  # counted once the whole envelope is known to be good
        metrics.SENTRY_ITEMS.labels(type=item_type, outcome=outcome).inc()
    return reports


def store_reports(*, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The legacy store endpoint's body: one event; a transaction there is dropped like in an envelope."""
    if event.get("type") == "transaction":
        metrics.SENTRY_ITEMS.labels(type="transaction", outcome="ignored").inc()
        return []
    report = event_report(event=event)
    metrics.SENTRY_ITEMS.labels(type="event", outcome="report").inc()
    return [report]


def event_id_hex(value: Any) -> str | None:
    """Sentry writes event ids as 32 hex digits, without dashes."""
    parsed = _uuid(value)
    return uuid.UUID(parsed).hex if parsed else None


# --- Events → native reports ------------------------------------------------------------------


def event_report(*, event: Mapping[str, Any], event_id: Any = None) -> dict[str, Any]:
    """A Sentry event as a validated native report. `event_id` is the envelope's, used when the
    event has none. Over-long SDK data is truncated to the report's limits, not refused."""
    return accept.report_validate(event_convert(event=event, event_id=event_id))


def event_convert(*, event: Mapping[str, Any], event_id: Any = None) -> dict[str, Any]:
    raised = _raised(event)
    exception = _exception(raised)
    report = {
        "event_id": _uuid(event.get("event_id")) or _uuid(event_id),
        "type": "ERROR",  # a Sentry event is an error whatever its level; classification may refine it
        "message": _message(event, exception),
        "exception": exception,
        "user": _user(_dict(event.get("user"))),
        "url": _text(_dict(event.get("request")).get("url"), 2048),
        "route": _text(event.get("transaction"), 500) or _text(event.get("culprit"), 500),
        "release": _text(event.get("release"), 200),
        "environment": _text(event.get("environment"), 64),
        "tags": _tags(event, raised),
        "timeline": _timeline(_values(event.get("breadcrumbs"))),
        "timestamp": _timestamp(event.get("timestamp")),
        "fingerprint": _fingerprint(event.get("fingerprint")),
    }
    return {name: value for name, value in report.items() if value not in (None, [], {})}


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _values(value: Any) -> list[Any]:
    """Sentry interfaces come as `{"values": [...]}` or, in older SDKs, as the bare list."""
    return _list(value.get("values") if isinstance(value, dict) else value)


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    elif not isinstance(value, str):
        return None
    # PostgreSQL cannot store NUL in text or jsonb; the write after the 2xx would fail.
    return value.replace("\x00", "")[:limit]


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _timestamp(value: Any) -> str | None:
    """Sentry timestamps are epoch seconds (a number, sometimes a numeric string) or RFC 3339; a
    time without a zone is UTC."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return None
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _raised(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The last of the chained exceptions: Sentry lists them oldest first, so the last is the one
    that was raised (and is what the app saw fail)."""
    values = _values(event.get("exception"))
    return next((v for v in reversed(values) if isinstance(v, dict)), {})


def _exception(raised: Mapping[str, Any]) -> dict[str, Any] | None:
    frames = [_frame(f) for f in _list(_dict(raised.get("stacktrace")).get("frames")) if isinstance(f, dict)]
    kind, value = _text(raised.get("type"), 200), _text(raised.get("value"), 8192)
    if not (kind or value or frames):
        return None
    # Frames are oldest first, as in native reports; the innermost (last) are the ones to keep.
    return {"type": kind or "Error", "value": value or "", "stacktrace": frames[-MAX_FRAMES:]}


def _frame(frame: Mapping[str, Any]) -> dict[str, Any]:
    lineno = frame.get("lineno")
    out = {
        "module": _text(frame.get("module"), 200),
        "function": _text(frame.get("function"), 200),
        "filename": _text(frame.get("filename"), 500) or _text(frame.get("abs_path"), 500),
        "lineno": lineno if type(lineno) is int else None,
        "in_app": frame.get("in_app") if isinstance(frame.get("in_app"), bool) else None,
    }
    return {name: value for name, value in out.items() if value is not None}


def _message(event: Mapping[str, Any], exception: Mapping[str, Any] | None) -> str:
    logentry, message = _dict(event.get("logentry")), event.get("message")
    candidates = [logentry.get("formatted"), logentry.get("message"), message]
    if isinstance(message, dict):  # the older `sentry.interfaces.Message` shape
        candidates += [message.get("formatted"), message.get("message")]
    for candidate in candidates:
        if text := _text(candidate, 8192):
            return text
    if exception:
        text = f"{exception['type']}: {exception['value']}" if exception["value"] else exception["type"]
        return text[:8192]
    csp = _dict(event.get("csp"))
    if csp:
        directive = _text(csp.get("effective_directive") or csp.get("violated_directive"), 200) or "?"
        return f"CSP: blocked {directive} from {_text(csp.get('blocked_uri'), 2000) or 'self'}"
    return UNLABELED


def _user(user: Mapping[str, Any]) -> dict[str, str] | None:
    # Sentry counts users by id, else username, else IP; "{{auto}}" asks the server to fill in the
    # client's IP, which behind a proxy would make every anonymous user one user: left out.
    ident = None
    for name in ("id", "username", "ip_address"):
        text = _text(user.get(name), 200)
        if text and text != "{{auto}}":
            ident = text
            break
    out = {"id": ident, "email": _text(user.get("email"), 254)}
    return {name: value for name, value in out.items() if value} or None


def _tags(event: Mapping[str, Any], raised: Mapping[str, Any]) -> dict[str, str] | None:
    raw = event.get("tags")
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:  # the list form: [["browser", "Firefox"], ...]
        pairs = [p for p in _list(raw) if isinstance(p, list) and len(p) == 2]
    tags: dict[str, str] = {}
    for name, value in pairs[:MAX_TAGS]:
        name, value = _text(name, 200), _text(value, 200)
        if name and value is not None:
            tags[name] = value
    # What Sentry itself shows as tags, unless the app set its own.
    mechanism = _dict(raised.get("mechanism"))
    handled = mechanism.get("handled")
    derived = {
        "level": _text(event.get("level"), 200),
        "logger": _text(event.get("logger"), 200),
        "server_name": _text(event.get("server_name"), 200),
        "mechanism": _text(mechanism.get("type"), 200),
        "handled": "yes" if handled is True else "no" if handled is False else None,
    }
    for name, value in derived.items():
        if value:
            tags.setdefault(name, value)
    return tags or None


def _timeline(crumbs: list[Any]) -> list[dict[str, Any]]:
    """Breadcrumbs as timeline entries: only the category and message, which are strings the SDK
    meant for display; `data` holds anything (request bodies, PII) and is left out."""
    entries = []
    for crumb in crumbs[-MAX_TIMELINE:]:
        if not isinstance(crumb, dict):
            continue
        entry = {
            "action": _text(crumb.get("category"), 200) or _text(crumb.get("type"), 200) or "breadcrumb",
            "detail": _text(crumb.get("message"), 2000) or "",
        }
        if at := _timestamp(crumb.get("timestamp")):
            entry["at"] = at
        entries.append(entry)
    return entries


def _fingerprint(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    parts = [_text(part, 200) for part in value[:10]]
    # Sentry accepts `{{default}}` spelled with any spacing; healing.ingest.fingerprint knows one spelling.
    parts = ["{{ default }}" if _DEFAULT_MARKER.match(p) else p for p in parts if p]
    return parts or None
