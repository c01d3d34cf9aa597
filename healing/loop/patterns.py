"""The error-pattern library: known problems and their fixes, matched without an LLM ("Level 0").

A pattern is a candidate for an issue when all its filled conditions hold: the project (or none,
for a global pattern), the issue's type, and the exception, message and route regexes. Its
confidence then weighs independent evidence:

- the fingerprint: exactly the group of reports it was learned from → 1.0;
- structure: each condition that held, weighted by how much it narrows things down
  (STRUCTURE_WEIGHTS: a message regex says more than a type);
- text: the cosine between character-trigram TF-IDF vectors of the report's symptoms and of the
  pattern's examples (its example lines, and the symptoms of the incidents it fixed).

Structure and text are combined as a noisy-OR, 1 − (1 − structure)(1 − similarity): either can
carry a match alone, and both together more so. The most confident candidate at or above its own
threshold wins, and its remediation plan is used at once.
"""

import copy
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from healing.audit import AUTOMATIC, audit_record
from healing.ingest.classify import regex_compile
from healing.ingest.fingerprint import normalize
from healing.models import ErrorPattern, Incident, IncidentOutcome, Issue, Occurrence
from kaizen_site.process_cache import ProcessCache
from notifications.owner_alert import EventType, owner_alert

logger = logging.getLogger("kaizen.patterns")

PATTERNS_CACHE_SECONDS = 10.0
STRUCTURE_WEIGHTS = {"type": 0.2, "route": 0.3, "exception": 0.4, "message": 0.5}
NGRAM = 3
MAX_TEXT = 2000  # characters of a report compared: enough to tell problems apart, cheap to vectorise
MAX_INCIDENT_EXAMPLES = 20  # per pattern, the newest
# A pattern whose fixes keep failing switches itself off: at least this many failures, and more
# than this share of its outcomes.
AUTO_DISABLE_MIN_FAILURES = 3
AUTO_DISABLE_FAILURE_RATE = 0.5

Vector = dict[str, float]


# --- Text similarity ---------------------------------------------------------------------------


def symptoms_text(report: Mapping[str, Any]) -> str:
    """What a report says, with the parts that vary between occurrences (ids, numbers) stripped."""
    exception = report.get("exception") or {}
    parts: list[str] = []
    for part in (exception.get("type"), report.get("message"), exception.get("value"), report.get("description")):
        if part and part not in parts:
            parts.append(str(part))
    return normalize(" ".join(parts)[:MAX_TEXT])


def _grams(text: str) -> Counter:
    """Character trigrams within words (padded with a space), so "expired" and "expires" share most."""
    grams: Counter = Counter()
    for word in text.lower().split():
        padded = f" {word} "
        grams.update(padded[i : i + NGRAM] for i in range(len(padded) - NGRAM + 1))
    return grams


@dataclass(frozen=True)
class TextIndex:
    """Inverse document frequencies over the library's examples: a trigram every example has
    ("ing", " th") says little; one only a few have says much."""

    idf: dict[str, float]
    unseen_idf: float

    def vector(self, text: str) -> Vector:
        weights = {gram: count * self.idf.get(gram, self.unseen_idf) for gram, count in _grams(text).items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {gram: w / norm for gram, w in weights.items()} if norm else {}


def text_index_build(documents: Iterable[str]) -> TextIndex:
    counted = [set(_grams(doc)) for doc in documents]
    frequency: Counter = Counter(gram for grams in counted for gram in grams)
    n = len(counted)
    # The smoothed idf of scikit-learn: no zero weights, no division by zero.
    idf = {gram: math.log((1 + n) / (1 + df)) + 1 for gram, df in frequency.items()}
    return TextIndex(idf=idf, unseen_idf=math.log(1 + n) + 1)


def cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(weight * b.get(gram, 0.0) for gram, weight in a.items())


# --- The library ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledPattern:
    id: int
    name: str
    project_id: int | None
    match_type: str
    exception: re.Pattern | None
    message: re.Pattern | None
    route: re.Pattern | None
    fingerprint: str
    examples: tuple[Vector, ...]
    threshold: float
    success_rate: float  # smoothed, for breaking ties


@dataclass(frozen=True)
class Library:
    patterns: tuple[CompiledPattern, ...]
    index: TextIndex


def _example_lines(text: str) -> list[str]:
    return [normalize(line) for line in text.splitlines() if line.strip()]


def library_build(patterns: Iterable[ErrorPattern]) -> Library:
    """Compile patterns with their examples: the example lines and the symptoms of the newest
    incidents each one fixed."""
    patterns = list(patterns)
    examples: dict[int, list[str]] = {p.pk: _example_lines(p.example_text) for p in patterns}
    learned: dict[int, int] = defaultdict(int)
    incidents = (
        Incident.objects.filter(pattern__in=[p.pk for p in patterns], outcome=IncidentOutcome.FIXED)
        .order_by("-created_at", "-id")
        .values_list("pattern_id", "symptoms")
    )
    for pattern_id, symptoms in incidents.iterator():
        if learned[pattern_id] < MAX_INCIDENT_EXAMPLES and symptoms and symptoms not in examples[pattern_id]:
            examples[pattern_id].append(symptoms)
            learned[pattern_id] += 1
    index = text_index_build(text for texts in examples.values() for text in texts)
    compiled = tuple(
        CompiledPattern(
            id=p.pk,
            name=p.name,
            project_id=p.project_id,
            match_type=p.match_type,
            exception=regex_compile(p.exception_regex),
            message=regex_compile(p.message_regex),
            route=regex_compile(p.route_regex),
            fingerprint=p.fingerprint,
            examples=tuple(index.vector(text) for text in examples[p.pk]),
            threshold=p.confidence_threshold,
            success_rate=(p.successes + 1) / (p.successes + p.failures + 2),
        )
        for p in patterns
    )
    return Library(patterns=compiled, index=index)


_library: ProcessCache[Library] = ProcessCache(ttl=PATTERNS_CACHE_SECONDS)


def active_library() -> Library:
    """The enabled patterns, compiled; reloaded every few seconds so console edits and newly
    learned patterns take effect in every process."""
    return _library.get("library", lambda: library_build(ErrorPattern.objects.filter(enabled=True)))


def forget_patterns() -> None:
    _library.clear()


def patterns_changed() -> None:
    # After commit: a reload before it would cache the old rows again. Other processes reload on
    # their own within PATTERNS_CACHE_SECONDS.
    transaction.on_commit(forget_patterns)


# --- Matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    pattern_id: int
    project_id: int | None
    success_rate: float
    confidence: float
    threshold: float
    structure: float
    similarity: float
    fingerprint_matched: bool


@dataclass(frozen=True)
class PatternMatch:
    pattern: ErrorPattern
    confidence: float
    plan: list[dict[str, Any]]
    structure: float
    similarity: float
    fingerprint_matched: bool


def report_of(*, issue: Issue, occurrence: Occurrence | None) -> dict[str, Any]:
    """The native report behind an occurrence (Sentry events are stored converted to it)."""
    if occurrence is None:
        return {"message": issue.title, "route": issue.culprit}
    report = dict(occurrence.payload or {})
    report.setdefault("message", occurrence.message)
    report.setdefault("route", occurrence.route)
    report.setdefault("url", occurrence.url)
    return report


def _locations(report: Mapping[str, Any]) -> list[str]:
    # The page's route, its URL, and the request that failed (for a silent failure the page is
    # often a single-page app's one route while the failing call names the feature).
    request = report.get("request") or {}
    return [text for text in (report.get("route"), report.get("url"), request.get("path")) if text]


def _score(pattern: CompiledPattern, *, issue: Issue, report: Mapping[str, Any], query: Vector) -> Candidate | None:
    if pattern.project_id is not None and pattern.project_id != issue.project_id:
        return None
    weights: list[float] = []
    if pattern.match_type:
        if issue.type != pattern.match_type:
            return None
        weights.append(STRUCTURE_WEIGHTS["type"])
    if pattern.exception:
        if not pattern.exception.search((report.get("exception") or {}).get("type") or ""):
            return None
        weights.append(STRUCTURE_WEIGHTS["exception"])
    if pattern.message:
        exception = report.get("exception") or {}
        words = " ".join(filter(None, (report.get("message"), exception.get("value"), report.get("description"))))
        if not pattern.message.search(words):
            return None
        weights.append(STRUCTURE_WEIGHTS["message"])
    if pattern.route:
        if not any(pattern.route.search(location) for location in _locations(report)):
            return None
        weights.append(STRUCTURE_WEIGHTS["route"])
    structure = 1 - math.prod(1 - w for w in weights)
    similarity = max((cosine(query, example) for example in pattern.examples), default=0.0)
    fingerprint_matched = bool(pattern.fingerprint) and pattern.fingerprint == issue.fingerprint
    confidence = 1.0 if fingerprint_matched else 1 - (1 - structure) * (1 - similarity)
    return Candidate(
        pattern_id=pattern.id,
        project_id=pattern.project_id,
        success_rate=pattern.success_rate,
        # Rounded: the cosine of two identical texts comes out a hair under 1.
        confidence=round(confidence, 4),
        threshold=pattern.threshold,
        structure=round(structure, 4),
        similarity=round(similarity, 4),
        fingerprint_matched=fingerprint_matched,
    )


def pattern_candidates(*, issue: Issue, occurrence: Occurrence | None, library: Library) -> list[Candidate]:
    """Every pattern of `library` whose conditions hold, most confident first; on a tie a
    project's own pattern before a global one, then the better record. Reads only."""
    report = report_of(issue=issue, occurrence=occurrence)
    query = library.index.vector(symptoms_text(report))
    scored = [_score(p, issue=issue, report=report, query=query) for p in library.patterns]
    found = [candidate for candidate in scored if candidate is not None]
    return sorted(found, key=lambda c: (-c.confidence, c.project_id is None, -c.success_rate, c.pattern_id))


def pattern_match(*, issue: Issue, occurrence: Occurrence | None = None) -> PatternMatch | None:
    """The best enabled pattern for this issue at or above its threshold, with its plan; None when
    none is confident enough. `occurrence` defaults to the issue's latest. The hit is counted and
    audited."""
    if occurrence is None:
        occurrence = issue.occurrences.order_by("-received_at", "-id").first()
    for candidate in pattern_candidates(issue=issue, occurrence=occurrence, library=active_library()):
        if candidate.confidence < candidate.threshold:
            continue
        with transaction.atomic():
            # The library may be seconds old: count the hit only on a row still enabled.
            counted = ErrorPattern.objects.filter(pk=candidate.pattern_id, enabled=True).update(
                hits=F("hits") + 1, last_used_at=timezone.now()
            )
            if not counted:
                continue
            pattern = ErrorPattern.objects.get(pk=candidate.pattern_id)
            audit_record(
                actor=AUTOMATIC,
                action="pattern.match",
                target=f"pattern:{pattern.pk}",
                detail={
                    "issue": str(issue.pk), "confidence": candidate.confidence, "threshold": candidate.threshold,
                    "structure": candidate.structure, "similarity": candidate.similarity,
                    "fingerprint": candidate.fingerprint_matched,
                },
            )  # fmt: skip
        return PatternMatch(
            pattern=pattern,
            confidence=candidate.confidence,
            plan=copy.deepcopy(pattern.remediation),  # the row's plan as it is now, not as cached
            structure=candidate.structure,
            similarity=candidate.similarity,
            fingerprint_matched=candidate.fingerprint_matched,
        )
    return None


def patterns_for_project(*, project_id: int) -> Library:
    """The project's and the global patterns, disabled ones included (for learning, which must
    find the pattern a failed fix came from even after it switched itself off)."""
    return library_build(ErrorPattern.objects.filter(Q(project_id=project_id) | Q(project__isnull=True)))


# --- Outcomes ------------------------------------------------------------------------------------


def _keeps_failing(pattern: ErrorPattern) -> bool:
    outcomes = pattern.successes + pattern.failures
    return pattern.failures >= AUTO_DISABLE_MIN_FAILURES and pattern.failures / outcomes > AUTO_DISABLE_FAILURE_RATE


def pattern_record_outcome(*, pattern: ErrorPattern, success: bool, actor: str = AUTOMATIC) -> ErrorPattern:
    """Count a fix that worked or failed. A pattern whose fixes keep failing disables itself and
    the owner is told."""
    with transaction.atomic():
        # Locked: concurrent outcomes queue, so the disabling rule sees the true counts.
        current = ErrorPattern.objects.select_for_update().get(pk=pattern.pk)
        if success:
            current.successes += 1
        else:
            current.failures += 1
        disable = not success and current.enabled and _keeps_failing(current)
        if disable:
            current.enabled, current.auto_disabled = False, True
            current.disabled_reason = (
                f"Disabled by Kaizen: {current.failures} of {current.successes + current.failures} fixes failed."
            )
        current.updated_at = timezone.now()
        current.save(
            update_fields=["successes", "failures", "enabled", "auto_disabled", "disabled_reason", "updated_at"]
        )
        target = f"pattern:{current.pk}"
        counts = {"successes": current.successes, "failures": current.failures}
        audit_record(actor=actor, action="pattern.outcome", target=target, detail={"success": success, **counts})
        if disable:
            audit_record(actor=actor, action="pattern.disable", target=target, detail={"why": current.disabled_reason})
            message = (
                f'Pattern "{current.name}" switched itself off. {current.disabled_reason} '
                "Re-enable it in the console once its fix is corrected."
            )
            owner_alert(kind=EventType.SYSTEM_ALERT, severity="P2", target=target, actor=actor,
                        title=f'Pattern "{current.name}" switched itself off', body=message,
                        dedupe_key=f"{target}:disabled", detail={"message": message, **counts})  # fmt: skip
            logger.warning(message, extra={"pattern": current.pk, **counts})
            patterns_changed()
    for name in ("successes", "failures", "enabled", "auto_disabled", "disabled_reason", "updated_at"):
        setattr(pattern, name, getattr(current, name))
    return current


def pattern_enable(*, pattern: ErrorPattern, actor: str) -> ErrorPattern:
    """Switch a pattern back on with a clean slate: its success and failure counts start again
    (the old ones are kept in the audit entry), or one more failure would switch it off at once."""
    with transaction.atomic():
        current = ErrorPattern.objects.select_for_update().get(pk=pattern.pk)
        before = {"enabled": current.enabled, "successes": current.successes, "failures": current.failures,
                  "disabled_reason": current.disabled_reason}  # fmt: skip
        current.enabled, current.auto_disabled, current.disabled_reason = True, False, ""
        current.successes = current.failures = 0
        current.updated_at = timezone.now()
        current.save(
            update_fields=["enabled", "auto_disabled", "disabled_reason", "successes", "failures", "updated_at"]
        )
        audit_record(actor=actor, action="pattern.enable", target=f"pattern:{current.pk}", detail={"before": before})
        patterns_changed()
    return current
