"""Grouping: which reports are the same problem.

In the spirit of Sentry's grouping: a client-sent fingerprint wins (with `{{ default }}` standing
for the computed one); else the exception type plus the in-app stack frames as module + function
(line numbers move with every deploy, so they are left out); else the message, with the parts
that vary between occurrences stripped, plus the route.
https://docs.sentry.io/concepts/data-management/event-grouping/
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MARKER = "{{ default }}"
MAX_FRAMES = 30  # the innermost frames: deep framework stacks should not split a group

# Order matters: an email or a UUID contains hex and digits that the later patterns would eat.
_VARIABLE_PARTS = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<int>"),
]
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Fingerprint:
    hash: str  # 64 hex characters
    grouping: str  # what it was computed from, for the console


def normalize(text: str) -> str:
    """Strip what varies between occurrences of one problem: ids, numbers, emails."""
    for pattern, placeholder in _VARIABLE_PARTS:
        text = pattern.sub(placeholder, text)
    return _SPACES.sub(" ", text).strip()


def normalize_route(route: str) -> str:
    route = route.split("?", 1)[0].split("#", 1)[0]
    return normalize(route)


def _frames_component(frames: Iterable[Mapping[str, Any]]) -> list[str]:
    frames = list(frames)
    in_app = [f for f in frames if f.get("in_app")]
    chosen = in_app or frames
    parts = []
    for frame in chosen[-MAX_FRAMES:]:
        module = frame.get("module") or normalize(frame.get("filename") or "")
        function = frame.get("function") or "?"
        if module or function != "?":
            parts.append(f"{module}.{function}")
    return parts


def default_components(report: Mapping[str, Any]) -> list[str]:
    exception = report.get("exception")
    if exception:
        frames = _frames_component(exception.get("stacktrace") or [])
        if frames:
            return ["exception", exception["type"], *frames]
        return ["exception", exception["type"], normalize(exception.get("value") or report.get("message") or "")]
    route = report.get("route") or report.get("url") or ""
    return ["message", report.get("type", "ERROR"), normalize(report.get("message") or ""), normalize_route(route)]


def fingerprint_report(report: Mapping[str, Any]) -> Fingerprint:
    client = report.get("fingerprint")
    if client:
        components: list[str] = ["custom"]
        for part in client:
            components.extend(default_components(report) if part == DEFAULT_MARKER else [part])
    else:
        components = default_components(report)
    grouping = " | ".join(components)
    return Fingerprint(hash=hashlib.sha256(grouping.encode()).hexdigest(), grouping=grouping[:2000])
