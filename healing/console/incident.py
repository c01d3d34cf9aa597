"""What an incident's page shows beyond its fields: a readable timeline, the stack trace as
frames, the diagnosis, the fix and how it was verified and rolled out, the session recording and
the logs. Plain reads, a fixed number of queries whatever the issue's history; IssueAdmin renders them.
"""

import base64
import binascii
import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db.models import Q
from django.urls import reverse

from flags.models import Rollout
from healing.models import (
    CHANGE_KEY_PREFIX,
    AuditEntry,
    Change,
    ChangeStatus,
    Issue,
    IssueEvent,
    Occurrence,
    PatchState,
    SessionRecording,
    Stage,
)
from healing.remediation import raw_plan_risk
from kaizen_site.models import LLMCall

TICKET = re.compile(rf"\b{CHANGE_KEY_PREFIX}(\d+)\b")
TIMELINE_SHOWN = 200  # events, newest kept: an issue reopened for months can have thousands
LOGS_SHOWN = 50  # LLM calls and audit entries, each
RECORDING_MAX_BYTES = 8 * 1024 * 1024  # decompressed: a report's snippet is ≤ 256 KiB compressed
PLAYER = "kaizen/vendor/rrweb-player/rrweb-player.js"  # an ES module that imports nothing


# --- The timeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineRow:
    at: Any
    stage: str
    stage_label: str
    message: str
    detail: str
    tickets: list[tuple[str, str]]  # (KAIZ-012, its admin page)


def timeline(issue: Issue) -> list[TimelineRow]:
    """The issue's events, oldest first, each with the tickets it names linked to their pages."""
    events = list(IssueEvent.objects.filter(issue=issue).order_by("-created_at", "-id")[:TIMELINE_SHOWN])[::-1]
    numbers = {int(n) for event in events for n in TICKET.findall(f"{event.message} {event.detail}")}
    pages = {
        number: reverse("admin:healing_change_change", args=[pk])
        for pk, number in Change.objects.filter(number__in=numbers).values_list("pk", "number")
    }
    rows = []
    for event in events:
        found = sorted({int(n) for n in TICKET.findall(f"{event.message} {event.detail}")})
        rows.append(
            TimelineRow(
                at=event.created_at,
                stage=event.stage,
                stage_label=Stage(event.stage).label if event.stage in Stage.values else event.stage,
                message=event.message,
                detail=event.detail,
                tickets=[(f"{CHANGE_KEY_PREFIX}{n:03d}", pages[n]) for n in found if n in pages],
            )
        )
    return rows


# --- The stack trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    function: str
    location: str  # file or module, with the line
    in_app: bool


@dataclass(frozen=True)
class StackTrace:
    type: str
    value: str
    frames: list[Frame]  # oldest first: the innermost call, where it was raised, is last


def _frame(raw: Any) -> Frame | None:
    if not isinstance(raw, dict):
        return None
    where = str(raw.get("filename") or raw.get("abs_path") or raw.get("module") or "?")
    line = raw.get("lineno")
    return Frame(
        function=str(raw.get("function") or "?"),
        location=f"{where}:{line}" if isinstance(line, int) and not isinstance(line, bool) else where,
        in_app=raw.get("in_app") is True,
    )


def _frames_of(stacktrace: Any) -> list[Frame]:
    # Native reports (and Sentry events as ingest converts them) carry a list of frames; a raw
    # Sentry interface is {"frames": [...]}.
    raw = stacktrace.get("frames") if isinstance(stacktrace, dict) else stacktrace
    return [frame for frame in map(_frame, raw if isinstance(raw, list) else []) if frame is not None]


def stack_trace(payload: dict[str, Any]) -> StackTrace | None:
    """The exception a report carried, as frames; None when it carried none."""
    exception = payload.get("exception")
    if isinstance(exception, dict) and isinstance(exception.get("values"), list):
        # A Sentry event's chain, oldest first: the last one is what was raised.
        chained = [value for value in exception["values"] if isinstance(value, dict)]
        exception = chained[-1] if chained else None
    if isinstance(exception, dict):
        return StackTrace(
            type=str(exception.get("type") or "Error"),
            value=str(exception.get("value") or ""),
            frames=_frames_of(exception.get("stacktrace")),
        )
    frames = _frames_of(payload.get("stacktrace"))
    return StackTrace(type="Stack", value="", frames=frames) if frames else None


def payload_display(payload: dict[str, Any]) -> str:
    """The report as received, pretty-printed, with the recording's base64 summarised."""
    shown = dict(payload)
    if shown.get("recording"):
        shown["recording"] = f"<{len(shown['recording'])} characters of base64 recording>"
    return json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False)


# --- The session recording ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    events: list[dict[str, Any]]
    source: str  # where it came from, for the page


def _events_playable(events: Any) -> list[dict[str, Any]] | None:
    if isinstance(events, dict):
        events = events.get("events")
    if not isinstance(events, list) or len(events) < 2:
        return None  # rrweb's player needs at least two events
    if not all(isinstance(e, dict) and "type" in e and "timestamp" in e for e in events):
        return None
    return events


def recording_decode(encoded: str) -> list[dict[str, Any]] | None:
    """A report's `recording` (base64 of gzip'd rrweb events), or None if it is not one. The
    decompression is bounded: a small snippet must not inflate into gigabytes on the web process."""
    try:
        packed = base64.b64decode(encoded, validate=True)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        raw = inflater.decompress(packed, RECORDING_MAX_BYTES)
        if inflater.unconsumed_tail:
            return None
        return _events_playable(json.loads(raw))
    except (binascii.Error, ValueError, zlib.error, gzip.BadGzipFile):
        return None


def recording_for(issue: Issue, latest: Occurrence | None) -> Recording | None:
    """The newest recording of the issue: one the user agreed to record while trying again
    (the session stream's SessionRecording), else the snippet the latest report carried."""
    row = SessionRecording.objects.filter(issue=issue).order_by("-created_at").first()
    events = _events_playable(row.events) if row is not None else None
    if events:
        return Recording(events=events, source=f"session recording of {row.created_at:%Y-%m-%d %H:%M:%S}")
    encoded = (latest.payload or {}).get("recording") if latest is not None else None
    events = recording_decode(encoded) if isinstance(encoded, str) else None
    return Recording(events=events, source=f"snippet in report {latest.event_id}") if events else None


def player_installed() -> bool:
    """rrweb-player is served from node_modules (settings.BROWSER_PACKAGES); `npm ci` may not have run."""
    return finders.find(PLAYER) is not None


# --- The fix -----------------------------------------------------------------------------------


@dataclass
class Fix:
    change: Change
    url: str
    plan: list[dict[str, Any]]
    risk: str
    patch_waiting: bool  # a code patch the owner can approve or reject now
    verification: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "user" / "generic" → 5 each
    held: list[dict[str, Any]] = field(default_factory=list)
    rollout: Rollout | None = None
    patch_lines: list[tuple[str, str]] = field(default_factory=list)  # (add | del | hunk | file | context, line)


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff's lines, each with what it is, for colouring."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "context")
        lines.append((kind, line))
    return lines


def fix_for(issue: Issue) -> Fix | None:
    """The issue's newest Change, with its plan, verification scorecard and rollout."""
    change = Change.objects.filter(issue=issue).select_related("rollout__flag").order_by("-number").first()
    if change is None:
        return None
    verification = change.scorecard.get("verification") or {}
    probes: dict[str, list[dict[str, Any]]] = {"user": [], "generic": []}
    for probe in verification.get("probes") or []:
        if isinstance(probe, dict):
            probes.setdefault(str(probe.get("account")), []).append(probe)
    try:
        rollout = change.rollout
    except Rollout.DoesNotExist:
        rollout = None
    waiting = (PatchState.NONE, PatchState.AWAITING_APPROVAL, PatchState.FAILED)
    return Fix(
        change=change,
        url=reverse("admin:healing_change_change", args=[change.pk]),
        plan=[step for step in change.plan or [] if isinstance(step, dict)],
        risk=raw_plan_risk(change.plan or []).value,
        patch_waiting=bool(change.patch_diff.strip())
        and change.status == ChangeStatus.IN_REVIEW
        and change.patch_state in waiting,
        verification=verification,
        probes=probes,
        held=change.scorecard.get("held") or [],
        rollout=rollout,
        patch_lines=diff_lines(change.patch_diff),
    )


def diagnosis_for(issue: Issue) -> dict[str, Any] | None:
    """The stored diagnosis; for an issue diagnosed before it was stored, the root cause the
    timeline recorded."""
    if issue.diagnosis:
        return issue.diagnosis
    found = IssueEvent.objects.filter(issue=issue, stage=Stage.ROOT_CAUSE_FOUND).order_by("-created_at").first()
    return {"root_cause": found.detail, "hypotheses": [], "level": ""} if found and found.detail else None


# --- Logs --------------------------------------------------------------------------------------


def logs_for(issue: Issue, fix: Fix | None) -> dict[str, list[Any]]:
    """The LLM calls made for the issue, and the audit entries about it, its change and rollout."""
    targets = Q(target=f"issue:{issue.pk}")
    if fix is not None:
        targets |= Q(target=f"change:{fix.change.key}") | Q(target=f"rollout:{fix.change.key}")
    return {
        "llm_calls": list(LLMCall.objects.filter(issue_id=issue.pk).order_by("-created_at")[:LOGS_SHOWN]),
        "audit": list(AuditEntry.objects.filter(targets).order_by("-created_at", "-id")[:LOGS_SHOWN]),
    }


def incident_context(issue: Issue) -> dict[str, Any]:
    """Everything the incident page shows besides the issue's own fields."""
    latest = Occurrence.objects.filter(issue=issue).order_by("-received_at", "-id").first()
    payload = (latest.payload or {}) if latest is not None else {}
    fix = fix_for(issue)
    recording = recording_for(issue, latest)
    return {
        "timeline": timeline(issue),
        "latest": latest,
        "description": payload.get("description") or "",
        "stack": stack_trace(payload),
        "raw_payload": payload_display(payload) if latest is not None else "",
        "diagnosis": diagnosis_for(issue),
        "fix": fix,
        "recording": recording,
        "recording_events": recording.events if recording else None,
        "player_installed": player_installed(),
        "player_base": f"{settings.STATIC_URL}kaizen/vendor/rrweb-player/",
        "logs": logs_for(issue, fix),
    }
