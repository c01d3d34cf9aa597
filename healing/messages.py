"""What the user reads in the popup: one friendly message per stage and issue type, their name
when known, how far along the fix is and roughly how long is left.

The owner edits the words in the console (MessageTemplate); DEFAULT_TEMPLATES is what a fresh
install starts from (migration 0008 seeds them) and what is used when a row is missing. A
diagnosis may word the message itself (its `user_message`, or the question it asks), but that
text came from a model reading stack traces and SQL: it is shown only when `text_is_safe` finds
nothing internal in it, and the template is used otherwise.
"""

import re
import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from healing.models import IssueEvent, MessageStage, MessageTemplate, Stage
from kaizen_site.process_cache import ProcessCache

M = MessageStage

# Issue stage → the message the user reads. Deployed, mitigated and resolved all read "Fixed".
STAGE_MESSAGES: dict[str, str] = {
    Stage.DETECTED: M.DETECTED,
    Stage.DIAGNOSING: M.DIAGNOSING,
    Stage.ROOT_CAUSE_FOUND: M.ROOT_CAUSE_FOUND,
    Stage.NEEDS_INPUT: M.NEEDS_INPUT,
    Stage.FIXING: M.FIXING,
    Stage.VERIFYING: M.VERIFYING,
    Stage.DEPLOYED: M.RESOLVED,
    Stage.MITIGATED: M.RESOLVED,
    Stage.RESOLVED: M.RESOLVED,
    Stage.ESCALATED: M.ESCALATED,
    Stage.ABORTED: M.ESCALATED,
}
FINAL_STAGES = (Stage.DEPLOYED, Stage.MITIGATED, Stage.RESOLVED)
STEPS = 6
# The popup's progress bar. Needs-input sits where the cause is being worked out; a person taking
# over keeps the bar where the automatic fix stopped short of one.
STEP = {
    Stage.DETECTED: 1,
    Stage.DIAGNOSING: 2,
    Stage.ROOT_CAUSE_FOUND: 3,
    Stage.NEEDS_INPUT: 3,
    Stage.ESCALATED: 3,
    Stage.ABORTED: 3,
    Stage.FIXING: 4,
    Stage.VERIFYING: 5,
    Stage.DEPLOYED: 6,
    Stage.MITIGATED: 6,
    Stage.RESOLVED: 6,
}
# The working stages in order, to add up what is left. Typical seconds when there is no history yet.
ETA_PATH = (Stage.DETECTED, Stage.DIAGNOSING, Stage.ROOT_CAUSE_FOUND, Stage.FIXING, Stage.VERIFYING)
ETA_FALLBACK_SECONDS = {
    Stage.DETECTED: 5,
    Stage.DIAGNOSING: 20,
    Stage.ROOT_CAUSE_FOUND: 10,
    Stage.FIXING: 20,
    Stage.VERIFYING: 30,
}
ETA_HISTORY = timedelta(days=7)
ETA_SAMPLE = 2000  # events read to learn the stage durations
ETA_MIN_SAMPLES = 3  # fewer than this for a stage: its fallback is used

ANY = ""  # MessageTemplate.issue_type for every type
DEFAULT_TEMPLATES: dict[tuple[str, str], str] = {
    (M.DETECTED, ANY): "Sorry about that, {name}. Something didn't work as it should, and we're already on it.",
    (M.DETECTED, "ERROR"): "Sorry, {name}, that didn't go through on our side. We've spotted it and are on it.",
    (M.DETECTED, "SILENT_FAILURE"): "Looks like that click didn't do anything, {name}. We noticed, and we're on it.",
    (M.DETECTED, "SLOW_RESPONSE"): "Sorry for the wait, {name}. That took far too long, and we're looking into why.",
    (M.DETECTED, "DATA_INCONSISTENCY"): "Something on this page doesn't add up, {name}. We've noticed and are "
    "checking it for you.",
    (M.DETECTED, "AUTH_ISSUE"): "Sorry, {name}, it looks like you were signed out when you shouldn't have been. "
    "We're on it.",
    (M.DETECTED, "BILLING_ISSUE"): "Something went wrong with your account balance, {name}. Nothing is lost: "
    "we're checking it now.",
    (M.DETECTED, "UX_CONFUSION"): "Looks like this isn't doing what you expected, {name}. We've noticed and are "
    "taking a look.",
    (M.DETECTED, "USER_REPORTED"): "Thanks for telling us, {name}. We've got your message and are looking into it.",
    (M.DIAGNOSING, ANY): "We're working out what went wrong. This usually takes less than a minute.",
    (M.ROOT_CAUSE_FOUND, ANY): "Good news: we found what caused it and are getting a fix ready.",
    (M.FIXING, ANY): "We're putting the fix in place now.",
    (M.VERIFYING, ANY): "Almost there: we're double-checking that the fix works before you try again.",
    (M.RESOLVED, ANY): "**Fixed.** Thanks for your patience, {name}. Please try again.",
    (M.RESOLVED, "AUTH_ISSUE"): "**Fixed.** You can sign in again now, {name}, and you should stay signed in.",
    (M.RESOLVED, "BILLING_ISSUE"): "**Fixed.** Your balance is up to date now, {name}. Thanks for your patience.",
    (M.RESOLVED, "SLOW_RESPONSE"): "**Fixed.** It should be quick again now, {name}. Please try again.",
    (M.NEEDS_INPUT, ANY): "We need a little help from you, {name}: could you tell us what you were trying to do?",
    (M.REPRODUCTION_REQUEST, ANY): "Could you try that once more, {name}? If you allow it, we'll record just this "
    "page while you do, so we can see exactly what happens. Nothing you type is recorded.",
    (M.ESCALATED, ANY): "This one needs a person, {name}. Someone from the team has been told and will fix it "
    "as soon as they can.",
}

# What must never reach a user: anything that looks like the inside of the system. A message
# matching any of these is replaced by the template. Erring towards the template is cheap.
_INTERNALS = [
    re.compile(p, re.IGNORECASE if flags else 0)
    for p, flags in (
        (r"traceback|stack ?trace|\bat [\w$.<>]+ ?\(|File \"[^\"]+\", line \d+|\.(py|js|ts|rb|go|php|java):\d+", 1),
        (r"\b(select|insert|update|delete)\b[\s\S]*\b(from|into|set|where)\b|\bdrop table\b|\brelation \"", 1),
        (r"\b(sk|pk|rk|ghp|gho|xox[abp])[-_][-_A-Za-z0-9]{8,}|\beyJ[\w-]{8,}|\bbearer\s+\S+", 1),
        (r"\bAKIA[0-9A-Z]{12,}", 0),
        (r"\b(api[_ -]?key|secret|password|passwd|token|dsn|credential)s?\s*[=:]", 1),
        (r"\b[A-Za-z0-9+/_-]{32,}\b", 0),  # long opaque strings: keys, hashes, tokens
        (r"\b\d{1,3}(\.\d{1,3}){3}\b|\[?[0-9a-f]{1,4}(:[0-9a-f]{0,4}){3,7}\]?", 1),  # IPv4 / IPv6
        (r"[a-z][a-z0-9+.-]*://|\blocalhost\b|\b(?:[a-z0-9-]+\.)+(?:[a-z]{2,})(?::\d+)?\b", 1),  # URLs, hostnames
        (r"(?:^|[\s(\"'`])(?:~|\.{1,2})?/[\w.-]+/[\w./-]+|\b[A-Za-z]:\\", 0),  # file paths
        (r"\b[A-Z][A-Za-z0-9]*(Error|Exception|Fault|Failure)\b|\berrno\b|\bnull ?pointer\b|\bsegfault\b", 0),
        (r"\bHTTP ?[45]\d\d\b|\bstatus(?: code)? [45]\d\d\b|<\s*/?\s*[a-z][^>]*>|\{\{|\}\}", 1),
    )
]
MAX_MESSAGE_CHARS = 400


def text_is_safe(text: str) -> bool:
    """True when `text` can be shown to a user as it is: short and with nothing internal in it."""
    text = (text or "").strip()
    if not text or len(text) > MAX_MESSAGE_CHARS:
        return False
    return not any(pattern.search(text) for pattern in _INTERNALS)


_templates: ProcessCache[dict[tuple[str, str], str]] = ProcessCache(ttl=30.0)


def _templates_load() -> dict[tuple[str, str], str]:
    rows = MessageTemplate.objects.values_list("stage", "issue_type", "text")
    return {**DEFAULT_TEMPLATES, **{(stage, issue_type): text for stage, issue_type, text in rows}}


def forget_templates() -> None:
    """The console calls this after an edit; other processes see it within the cache's TTL."""
    _templates.clear()


_NAME_ALONE = re.compile(r"^\s*\{name\}\s*[,:]?\s*|,?\s*\{name\}")


def _fill(template: str, *, name: str) -> str:
    """Fill in `{name}`; without a name, drop it with its comma ("Sorry, {name}, that..." reads
    "Sorry, that..."). str.format would fail on an owner's stray brace: only this placeholder is filled."""
    if name:
        return template.replace("{name}", name).strip()
    text = _NAME_ALONE.sub("", template).strip()
    return text[:1].upper() + text[1:]


def template_text(*, message_stage: str, issue_type: str, name: str = "") -> str:
    """The owner's (or the default) words for a message stage and issue type, with the name filled in."""
    templates = _templates.get("templates", _templates_load)
    text = templates.get((message_stage, issue_type)) or templates.get((message_stage, ANY)) or ""
    return _fill(text, name=display_name(name))


def display_name(name: str) -> str:
    """The first name, as a person would address the user; never an email address."""
    name = (name or "").strip()
    if not name or "@" in name or not text_is_safe(name):
        return ""
    return name.split()[0][:40]


def stage_message(*, stage: str, issue_type: str, name: str = "", worded: str = "") -> str:
    """The message for an issue at `stage`: the diagnosis's own `worded` text when it is safe to
    show (and the stage is one where the diagnosis speaks), else the template."""
    if worded and stage in (Stage.ROOT_CAUSE_FOUND, Stage.NEEDS_INPUT) and text_is_safe(worded):
        return worded.strip()
    return template_text(message_stage=STAGE_MESSAGES.get(stage, M.DETECTED), issue_type=issue_type, name=name)


def question_for(*, stage: str, worded: str) -> str | None:
    """What the user is asked when the diagnosis needs input: its question when safe, else none
    (the popup then shows the NEEDS_INPUT template alone)."""
    if stage != Stage.NEEDS_INPUT or not text_is_safe(worded):
        return None
    return worded.strip()


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    eta_seconds: int | None
    final: bool


_durations: ProcessCache[dict[str, float]] = ProcessCache(ttl=60.0)


def _durations_load() -> dict[str, float]:
    """Median seconds each working stage took in recent issues: the time from entering a stage to
    the issue's next event."""
    since = timezone.now() - ETA_HISTORY
    rows = (
        IssueEvent.objects.filter(created_at__gte=since)
        .order_by("issue_id", "created_at", "id")
        .values_list("issue_id", "stage", "created_at")[:ETA_SAMPLE]
    )
    samples: dict[str, list[float]] = {}
    previous = None
    for issue_id, stage, created_at in rows:
        if previous is not None and previous[0] == issue_id and previous[1] in ETA_FALLBACK_SECONDS:
            samples.setdefault(previous[1], []).append((created_at - previous[2]).total_seconds())
        previous = (issue_id, stage, created_at)
    return {stage: statistics.median(values) for stage, values in samples.items() if len(values) >= ETA_MIN_SAMPLES}


def forget_durations() -> None:
    _durations.clear()


def progress(*, stage: str) -> Progress:
    """How far along the fix is and an estimate of the seconds left (None when it waits on a
    person: the user's answer, or the team)."""
    final = stage in FINAL_STAGES
    if final:
        eta = 0
    elif stage in ETA_PATH:
        learned = _durations.get("durations", _durations_load)
        remaining = ETA_PATH[ETA_PATH.index(stage) :]
        eta = round(sum(learned.get(s, ETA_FALLBACK_SECONDS[s]) for s in remaining))
    else:
        eta = None
    return Progress(step=STEP.get(stage, 1), steps=STEPS, eta_seconds=eta, final=final)
