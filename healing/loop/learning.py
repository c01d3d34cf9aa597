"""Learning from finished incidents.

A completed Change that fixed an issue becomes an Incident (symptoms → cause → fix → outcome)
and strengthens the pattern it came from, or becomes a new pattern: the issue's fingerprint and
type, its normalized symptoms as the example, the Change's plan as the remediation. The next
identical problem is then fixed at once by healing.loop.patterns, without the LLM. A fix that failed
weakens its pattern, which switches itself off when that keeps happening.

Both functions are idempotent per Change (one Incident each), as a redelivered task requires.
"""

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from healing.audit import AUTOMATIC, audit_record
from healing.ingest.fingerprint import normalize
from healing.loop.patterns import (
    pattern_candidates,
    pattern_record_outcome,
    patterns_changed,
    patterns_for_project,
    report_of,
    symptoms_text,
)
from healing.models import Change, ChangeStatus, ErrorPattern, Incident, IncidentOutcome, Issue, IssueUser, Occurrence
from healing.remediation import RemediationPlanError, remediation_plan_validate

logger = logging.getLogger("kaizen.learning")

LEARNED_NAME_PREFIX = "Learned: "


class LearningError(Exception):
    """The change cannot be learned from; the message says why."""


def _latest_occurrence(issue: Issue) -> Occurrence | None:
    return issue.occurrences.order_by("-received_at", "-id").first()


def _affected_users(issue: Issue, occurrence: Occurrence | None, plan: Sequence[Mapping[str, Any]]) -> set[str]:
    named = {str(step.get("params", {}).get("user_id")) for step in plan if step.get("params", {}).get("user_id")}
    users = set(IssueUser.objects.filter(issue=issue, user_key__in=named).values_list("user_key", flat=True))
    if occurrence is not None and occurrence.user_id in named:
        users.add(occurrence.user_id)
    return users


def plan_generalize(plan: Sequence[Mapping[str, Any]], *, users: Iterable[str]) -> list[dict[str, Any]]:
    """The plan without the affected users' ids: a learned pattern fixes whoever reports the
    problem next, and the actions act for the user in their context when the step names none."""
    users = set(users)
    general = []
    for step in plan:
        params = {k: v for k, v in (step.get("params") or {}).items() if not (k == "user_id" and v in users)}
        general.append({"action": step["action"], "params": params})
    return general


def _plan_key(plan: Sequence[Mapping[str, Any]]) -> str:
    # Empty params and params left at None mean the same as absent ones.
    steps = [
        [step.get("action"), {k: v for k, v in (step.get("params") or {}).items() if v not in (None, "", [], {})}]
        for step in plan
    ]
    return json.dumps(steps, sort_keys=True)


def _pattern_for(
    *, issue: Issue, occurrence: Occurrence | None, plan: Sequence[Mapping[str, Any]]
) -> ErrorPattern | None:
    """The pattern this fix came from: one with the same plan that holds this fingerprint, else
    the most confident such one that matches the issue (disabled ones included: a failed fix
    must still be counted against the pattern that switched itself off)."""
    key = _plan_key(plan)
    same_fingerprint = ErrorPattern.objects.filter(
        Q(project=issue.project_id) | Q(project__isnull=True), fingerprint=issue.fingerprint
    ).order_by(F("project").asc(nulls_last=True), "-enabled", "id")
    for pattern in same_fingerprint:
        if _plan_key(pattern.remediation) == key:
            return pattern
    library = patterns_for_project(project_id=issue.project_id)
    for candidate in pattern_candidates(issue=issue, occurrence=occurrence, library=library):
        if candidate.confidence < candidate.threshold:
            continue
        pattern = ErrorPattern.objects.filter(pk=candidate.pattern_id).first()
        if pattern is not None and _plan_key(pattern.remediation) == key:
            return pattern
    return None


def _symptoms(issue: Issue, occurrence: Occurrence | None) -> str:
    return symptoms_text(report_of(issue=issue, occurrence=occurrence)) or normalize(issue.title)


def _lock(change: Change) -> None:
    # Held to commit. The change: a duplicate task learning from it waits, then finds its Incident.
    # The issue: two changes fixing it, learned at once, would otherwise both create a pattern.
    Change.objects.select_for_update().filter(pk=change.pk).first()
    Issue.objects.select_for_update().filter(pk=change.issue_id).first()


def incident_learn(
    *,
    change: Change,
    pattern: ErrorPattern | None = None,
    root_cause: str = "",
    actor: str = AUTOMATIC,
    outcome: str = IncidentOutcome.FIXED,
) -> Incident:
    """Record a completed change's incident and learn from it. `outcome` is FIXED when the cause
    was fixed for everyone, MITIGATED when the fix acted for the affected user only (its pattern
    still counts a success: it did what it does, and the next user is mitigated at once).

    `pattern` is the one the fix came from, when the caller knows it; otherwise it is looked up (same plan, and the same
    fingerprint or a confident match), and a new one is made when none fits."""
    if change.issue_id is None:
        raise LearningError(f"{change.key} is not linked to an issue: there is nothing to learn from.")
    if change.status != ChangeStatus.COMPLETE:
        raise LearningError(f"{change.key} is {change.status}: only a completed change is learned from.")
    issue = change.issue
    occurrence = _latest_occurrence(issue)
    plan = plan_generalize(change.plan, users=_affected_users(issue, occurrence, change.plan))
    symptoms = _symptoms(issue, occurrence)
    with transaction.atomic():
        _lock(change)
        existing = Incident.objects.filter(change=change).first()
        if existing is not None:
            return existing
        pattern = pattern or _pattern_for(issue=issue, occurrence=occurrence, plan=plan)
        if pattern is not None and not pattern.enabled:
            # A switched-off pattern would keep what was learned out of use: learn anew instead.
            pattern = None
        created, not_learned = False, ""
        if pattern is not None:
            pattern_record_outcome(pattern=pattern, success=True, actor=actor)
        elif not plan:
            not_learned = "the fix was a code patch only: once deployed, there is nothing to apply again"
        else:
            try:
                remediation_plan_validate(plan)
            except RemediationPlanError as exc:
                not_learned = str(exc)
            else:
                pattern = _pattern_create(issue=issue, change=change, symptoms=symptoms, plan=plan, actor=actor)
                created = True
        incident = Incident.objects.create(
            issue=issue,
            change=change,
            pattern=pattern,
            symptoms=symptoms,
            root_cause=root_cause or change.objective or change.title,
            fix_plan=list(change.plan),
            fix_summary=change.patch_summary,
            outcome=outcome,
        )
        audit_record(
            actor=actor,
            action="incident.learn",
            target=f"incident:{incident.pk}",
            detail={
                "change": change.key, "issue": str(issue.pk), "pattern": pattern.pk if pattern else None,
                "pattern_created": created, "not_learned": not_learned, "outcome": outcome,
            },
        )  # fmt: skip
        patterns_changed()  # the incident's symptoms are a new example of its pattern
    if not_learned:
        logger.info("incident recorded without a pattern", extra={"change": change.key, "why": not_learned})
    return incident


def _pattern_create(
    *, issue: Issue, change: Change, symptoms: str, plan: list[dict[str, Any]], actor: str
) -> ErrorPattern:
    pattern = ErrorPattern(
        name=f"{LEARNED_NAME_PREFIX}{issue.title}"[:200],
        project=issue.project,
        description=f"Learned from {change.key} ({change.title}).",
        match_type=issue.type,
        fingerprint=issue.fingerprint,
        example_text=symptoms,
        remediation=plan,
        successes=1,
        created_by=actor,
    )
    pattern.full_clean()
    pattern.save()
    audit_record(
        actor=actor,
        action="pattern.create",
        target=f"pattern:{pattern.pk}",
        detail={"learned_from": change.key, "issue": str(issue.pk), "plan": plan, "example": symptoms},
    )
    return pattern


def incident_fix_failed(*, change: Change, pattern: ErrorPattern | None = None, actor: str = AUTOMATIC) -> Incident:
    """Record that a change's fix failed (aborted, rolled back, or regressed after completing) and
    count it against its pattern, which may then switch itself off."""
    if change.issue_id is None:
        raise LearningError(f"{change.key} is not linked to an issue: there is no pattern to weaken.")
    issue = change.issue
    occurrence = _latest_occurrence(issue)
    plan = plan_generalize(change.plan, users=_affected_users(issue, occurrence, change.plan))
    with transaction.atomic():
        _lock(change)
        incident = Incident.objects.filter(change=change).first()
        if incident is not None and incident.outcome == IncidentOutcome.FIX_FAILED:
            return incident
        pattern = (
            pattern
            or (incident.pattern if incident else None)
            or _pattern_for(issue=issue, occurrence=occurrence, plan=plan)
        )
        if pattern is not None:
            pattern_record_outcome(pattern=pattern, success=False, actor=actor)
        if incident is None:
            incident = Incident.objects.create(
                issue=issue,
                change=change,
                pattern=pattern,
                symptoms=_symptoms(issue, occurrence),
                root_cause=change.objective or change.title,
                fix_plan=list(change.plan),
                fix_summary=change.patch_summary,
                outcome=IncidentOutcome.FIX_FAILED,
            )
        else:  # it had been learned as fixed, and regressed
            incident.pattern, incident.outcome, incident.updated_at = (
                pattern,
                IncidentOutcome.FIX_FAILED,
                timezone.now(),
            )
            incident.save(update_fields=["pattern", "outcome", "updated_at"])
        audit_record(
            actor=actor,
            action="incident.fix_failed",
            target=f"incident:{incident.pk}",
            detail={"change": change.key, "issue": str(issue.pk), "pattern": pattern.pk if pattern else None},
        )
        patterns_changed()  # a failed fix's symptoms are no longer an example of its pattern
    return incident
