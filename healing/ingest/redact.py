"""Credentials in a captured report are redacted before it is stored or streamed.

A report captures the failing request so verification can replay it. The user's session cookie,
bearer token or API key in it would become a standing credential in the stream, the database and
the console, readable by anyone who can read a report; replays authenticate with a sandbox identity
that Kaizen signs instead (`flags.probes`). What is redacted keeps its name and loses its value,
so the console still shows that the request carried it.
"""

import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-access-token",
        "x-csrftoken",
        "x-csrf-token",
        "x-xsrf-token",
        "x-kaizen-key",
        "x-kaizen-probe",
        "x-kaizen-sandbox-user",
        "x-sentry-auth",
        "x-amz-security-token",
    }
)
CREDENTIAL_PARAMS = frozenset(
    {"token", "key", "api_key", "apikey", "password", "passwd", "pwd", "secret", "sig", "signature", "sentry_key",
     "access_token", "refresh_token", "id_token", "client_secret", "auth", "session", "sessionid", "jwt"}
)  # fmt: skip
# Whatever else names a secret in one of its parts: X-Custom-Token, X-Project-Api-Key, new_password,
# session_id. Whole parts only, so "author" or "tokens_used" keep their values.
CREDENTIAL_WORDS = re.compile(
    r"(?:^|[-_.])(?:token|secret|password|passwd|pwd|api[-_]?key|apikey|credentials?|cookie|auth|authorization|jwt"
    r"|session[-_]?id)(?:$|[-_.])",
    re.IGNORECASE,
)


def is_credential_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or bool(CREDENTIAL_WORDS.search(lowered))


def is_credential_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_PARAMS or bool(CREDENTIAL_WORDS.search(lowered))


def report_credentials_redact(*, report: MutableMapping[str, Any]) -> None:
    """Redact, in place, every credential the report captured: the failing request's headers,
    query and body, credentials in any URL it names, and secret-named keys of the client state."""
    request = report.get("request")
    if isinstance(request, MutableMapping):
        headers = request.get("headers")
        if isinstance(headers, MutableMapping):
            for name in list(headers):
                if is_credential_header(str(name)):
                    headers[name] = REDACTED
        query = request.get("query")
        if isinstance(query, MutableMapping):
            for name in list(query):
                if is_credential_param(str(name)):
                    query[name] = REDACTED
        if isinstance(request.get("path"), str):
            request["path"] = url_redact(request["path"])
        if "body" in request:
            request["body"] = value_redact(request["body"])
    if isinstance(report.get("url"), str):
        report["url"] = url_redact(report["url"])
    for entry in report.get("network") or []:
        if isinstance(entry, MutableMapping) and isinstance(entry.get("url"), str):
            entry["url"] = url_redact(entry["url"])
    if "state" in report:
        report["state"] = value_redact(report["state"])


def url_redact(url: str) -> str:
    """The URL with credential query parameters' values redacted (the URL untouched when it has none)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(is_credential_param(name) for name, _ in pairs):
        return url
    query = urlencode([(name, REDACTED if is_credential_param(name) else value) for name, value in pairs])
    return urlunsplit(parts._replace(query=query))


def value_redact(value: Any) -> Any:
    """JSON data with the values of secret-named keys redacted, at any depth."""
    if isinstance(value, dict):
        return {
            name: REDACTED if is_credential_param(str(name)) and item is not None else value_redact(item)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [value_redact(item) for item in value]
    return value
