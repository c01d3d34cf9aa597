"""Classification: the final type and severity of a report.

The client's type is a hint. The rules (ClassificationRule rows, editable in the admin, defaults
seeded by a migration) are tried in priority order; the first match decides type and base
severity.

Severity says how bad the problem is for users, never whether Kaizen could fix it ("needs a
person" is a stage). It rises only with impact: more affected users and heavy recurrence (the
rule's thresholds, at ingest), a fix that failed in production, a rollback (`severity_raise`).
"""

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from healing.audit import AUTOMATIC, audit_record
from healing.models import ClassificationRule, Issue, Severity
from kaizen_site.process_cache import ProcessCache

SEVERITY_ORDER = [Severity.P0, Severity.P1, Severity.P2, Severity.P3]
FALLBACK_SEVERITY = Severity.P2
RULES_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class CompiledRule:
    id: int
    project_id: int | None
    match_type: str
    message: re.Pattern | None
    route: re.Pattern | None
    exception: re.Pattern | None
    status_min: int | None
    status_max: int | None
    result_type: str
    severity: str
    escalate_users: int | None
    escalate_occurrences: int | None

    def matches(self, report: Mapping[str, Any], project_id: int) -> bool:
        if self.project_id is not None and self.project_id != project_id:
            return False
        if self.match_type and report.get("type") != self.match_type:
            return False
        if self.message and not self.message.search(_text_of(report)):
            return False
        if self.route and not self.route.search(report.get("route") or report.get("url") or ""):
            return False
        exception = report.get("exception") or {}
        if self.exception and not self.exception.search(exception.get("type") or ""):
            return False
        if self.status_min is not None or self.status_max is not None:
            status = (report.get("request") or {}).get("status")
            if status is None:
                return False
            if self.status_min is not None and status < self.status_min:
                return False
            if self.status_max is not None and status > self.status_max:
                return False
        return True


@dataclass(frozen=True)
class Classification:
    type: str
    severity: str
    rule_id: int | None


def _text_of(report: Mapping[str, Any]) -> str:
    exception = report.get("exception") or {}
    return " ".join(filter(None, (report.get("message"), report.get("description"), exception.get("value"))))


def regex_compile(pattern: str) -> re.Pattern | None:
    """An owner-written condition: case-insensitive; empty means "no condition"."""
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def compile_rule(rule: ClassificationRule) -> CompiledRule:
    return CompiledRule(
        id=rule.id,
        project_id=rule.project_id,
        match_type=rule.match_type,
        message=regex_compile(rule.message_regex),
        route=regex_compile(rule.route_regex),
        exception=regex_compile(rule.exception_regex),
        status_min=rule.status_min,
        status_max=rule.status_max,
        result_type=rule.result_type,
        severity=rule.severity,
        escalate_users=rule.escalate_users,
        escalate_occurrences=rule.escalate_occurrences,
    )


_rules: ProcessCache[list[CompiledRule]] = ProcessCache(ttl=RULES_CACHE_SECONDS)


def active_rules() -> list[CompiledRule]:
    """The enabled rules, compiled; reloaded every few seconds so admin edits take effect."""
    return _rules.get("rules", lambda: [compile_rule(r) for r in ClassificationRule.objects.filter(enabled=True)])


def forget_rules() -> None:
    _rules.clear()


def classify(*, report: Mapping[str, Any], project_id: int, rules: list[CompiledRule]) -> Classification:
    hint = report.get("type") or "ERROR"
    for rule in rules:
        if rule.matches(report, project_id):
            return Classification(type=rule.result_type or hint, severity=rule.severity, rule_id=rule.id)
    return Classification(type=hint, severity=FALLBACK_SEVERITY, rule_id=None)


def raise_severity(severity: str, levels: int) -> str:
    index = SEVERITY_ORDER.index(Severity(severity))
    return SEVERITY_ORDER[max(0, index - levels)].value


def escalated_severity(*, base: str, rule: CompiledRule | None, affected_users: int, occurrences: int) -> str:
    """One level up for many affected users, one more for heavy recurrence (never above P0)."""
    if rule is None:
        return base
    levels = 0
    if rule.escalate_users and affected_users >= rule.escalate_users:
        levels += 1
    if rule.escalate_occurrences and occurrences >= rule.escalate_occurrences:
        levels += 1
    return raise_severity(base, levels)


def more_severe(a: str, b: str) -> str:
    return a if SEVERITY_ORDER.index(Severity(a)) <= SEVERITY_ORDER.index(Severity(b)) else b


class Impact(enum.StrEnum):
    """What happened to users that makes an issue worse than it was classified."""

    FIX_FAILED_IN_PRODUCTION = "fix_failed_in_production"  # came back after it was resolved
    ROLLBACK = "rollback"  # the fix degraded the product for the users it reached


def severity_raise(*, issue_id: Any, impact: Impact, why: str, actor: str = AUTOMATIC) -> str | None:
    """One level up for `impact` (never above P0; never over the owner's pinned severity).
    Returns the new severity, or None when it did not change. Audited."""
    with transaction.atomic():
        current = Issue.objects.select_for_update().filter(pk=issue_id).values("severity", "severity_pinned").first()
        if current is None or current["severity_pinned"]:
            return None
        raised = raise_severity(current["severity"], 1)
        if raised == current["severity"]:
            return None
        Issue.objects.filter(pk=issue_id).update(severity=raised)
        audit_record(
            actor=actor,
            action="issue.severity_raise",
            target=f"issue:{issue_id}",
            detail={"from": current["severity"], "to": raised, "impact": str(impact), "why": why},
        )
    return raised
