"""Changes (Kaizen tickets): creating them, moving them through their lifecycle, their scorecard
and the digest of open tickets. Their code patch goes out through healing.changes.patch_executor; the
components they touch are healing.changes.components.

Every status move goes through `change_transition`: checked against TRANSITIONS, applied with a
conditional UPDATE (so a duplicate or concurrent move applies once), recorded in the promotion
log and the audit log in the same transaction.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as SpecError

from flags.models import KEY_PATTERN as FLAG_KEY_PATTERN
from healing.audit import audit_record
from healing.models import (
    CHANGE_KEY_PREFIX,
    Change,
    ChangeStatus,
    Component,
    Issue,
    PatchState,
    PromotionLogEntry,
    Severity,
)
from kaizen_site.diff import changes_between, fields_read

S = ChangeStatus

# The lifecycle. in_review → in_progress is rework: a reviewer sends the patch back and the same
# ticket (with its history) carries on instead of a new one being opened. Nothing leaves canary
# except forward or out: a degraded canary is rolled back, which is an abort, and a new attempt
# is a new Change with its own verification.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.DRAFT: (S.PLANNED, S.ABORTED),
    S.PLANNED: (S.IN_PROGRESS, S.ABORTED),
    S.IN_PROGRESS: (S.IN_REVIEW, S.ABORTED),
    S.IN_REVIEW: (S.CANARY, S.IN_PROGRESS, S.ABORTED),
    S.CANARY: (S.COMPLETE, S.ABORTED),
    S.COMPLETE: (),
    S.ABORTED: (),
}
OPEN_STATUSES = tuple(status for status, moves in TRANSITIONS.items() if moves)

# Once a change is in review, what was reviewed is what runs: its plan, patch, flag and component
# are frozen (rework moves it back to in_progress first). A finished change is not edited at all.
CONTENT_FIELDS = ("component", "flag_key", "plan", "patch_summary", "patch_diff")
EDITABLE_FIELDS = (
    "title", "owner", "severity", "objective", "success_criteria", "abort_criteria", "rollback_plan", "issue",
    *CONTENT_FIELDS,
)  # fmt: skip
CONTENT_EDITABLE_STATUSES = (S.DRAFT, S.PLANNED, S.IN_PROGRESS)

SEVERITY_WORDS = {"critical": Severity.P0, "high": Severity.P1, "medium": Severity.P2, "low": Severity.P3}

NUMBER_ATTEMPTS = 50


class ChangeError(Exception):
    """A request about a Change that cannot be carried out; the message says why."""


class ChangeNotFound(ChangeError):
    pass


class ChangeTransitionError(ChangeError):
    def __init__(self, *, key: str, from_status: str, to_status: str, note: str = "") -> None:
        self.key, self.from_status, self.to_status = key, from_status, to_status
        self.allowed = TRANSITIONS.get(from_status, ())
        moves = ", ".join(self.allowed) if self.allowed else f"none ({from_status} is final)"
        super().__init__(
            f"{key}: {from_status} → {to_status} is not allowed{note}. Allowed moves from {from_status}: {moves}."
        )


class ChangeTransitionConflict(ChangeTransitionError):
    """The change moved after the caller read it: the caller's move was decided on stale facts."""


@dataclass(frozen=True)
class PatchSpec:
    summary: str  # markdown
    diff: str  # unified diff


class RemediationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


# --- Reading ----------------------------------------------------------------------------------


def severity_parse(value: str) -> str:
    """P0–P3, or the words owners use: critical, high, medium, low."""
    text = value.strip()
    if text.upper() in Severity.values:
        return text.upper()
    if text.lower() in SEVERITY_WORDS:
        return SEVERITY_WORDS[text.lower()]
    words = ", ".join(f"{word} ({sev})" for word, sev in SEVERITY_WORDS.items())
    raise ChangeError(f'Unknown severity "{value}": use P0–P3 or {words}.')


def change_get(*, key: str) -> Change:
    """By display id (KAIZ-001, any case) or bare number."""
    match = re.fullmatch(rf"(?:{CHANGE_KEY_PREFIX})?0*(\d+)", key.strip(), flags=re.IGNORECASE)
    change = Change.objects.select_related("component", "issue").filter(number=int(match[1])).first() if match else None
    if change is None:
        raise ChangeNotFound(f"No change {key}.")
    return change


@dataclass
class Digest:
    total: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # status → severity → open tickets


def changes_digest() -> Digest:
    """Open tickets by status and severity."""
    digest = Digest()
    rows = Change.objects.filter(status__in=OPEN_STATUSES).values("status", "severity").annotate(n=Count("id"))
    for row in rows:
        digest.counts.setdefault(row["status"], {})[row["severity"]] = row["n"]
        digest.total += row["n"]
    return digest


# --- Lifecycle --------------------------------------------------------------------------------


def change_target(change: Change) -> str:
    """The audit log's target for a change."""
    return f"change:{change.key}"


def plan_clean(plan: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(plan, list | tuple):
        raise ValidationError({"plan": 'A list of remediation actions: [{"action": …, "params": {…}}].'})
    try:
        return [RemediationStep.model_validate(step).model_dump() for step in plan]
    except SpecError as exc:
        raise ValidationError({"plan": f"Not a list of remediation actions: {_spec_problems(exc)}"}) from exc


def _flag_key_clean(flag_key: str) -> str:
    if flag_key and not re.fullmatch(FLAG_KEY_PATTERN, flag_key):
        raise ValidationError({"flag_key": "Letters, digits, '.', '_' and '-', starting with a letter or digit."})
    return flag_key


def _insert_numbered(change: Change) -> None:
    # Max()+1, retried on the unique index: two creators can read the same maximum; the second
    # insert waits for the first to commit, fails, and its savepoint retries with the new maximum.
    # A counter row locked until commit would instead serialise every transaction that opens a
    # ticket for as long as that transaction runs.
    for _ in range(NUMBER_ATTEMPTS):
        change.number = (Change.objects.aggregate(top=Max("number"))["top"] or 0) + 1
        try:
            with transaction.atomic():
                change.save(force_insert=True)
            return
        except IntegrityError:
            if not Change.objects.filter(number=change.number).exists():
                raise  # some other constraint
    raise ChangeError("Could not allocate a ticket number: too many tickets opened at once; try again.")


def change_create(
    *,
    title: str,
    severity: str,
    actor: str,
    component: Component | None = None,
    issue: Issue | None = None,
    plan: Sequence[Mapping[str, Any]] | None = None,
    patch: PatchSpec | None = None,
    owner: str = "",
    objective: str = "",
    success_criteria: str = "",
    abort_criteria: str = "",
    rollback_plan: str = "",
    flag_key: str = "",
    why: str = "",
    scheduled_for: datetime | None = None,
) -> Change:
    """Open a ticket (a draft). Owner and rollback plan default to the component's. A fix for an
    issue is a Change linked to it; `scheduled_for` leaves the draft for the schedule sweep to start."""
    change = Change(
        title=title.strip(),
        severity=severity_parse(severity),
        component=component,
        issue=issue,
        plan=plan_clean(plan or []),
        patch_summary=patch.summary if patch else "",
        patch_diff=patch.diff if patch else "",
        owner=owner or (component.owner if component else ""),
        objective=objective,
        success_criteria=success_criteria,
        abort_criteria=abort_criteria,
        rollback_plan=rollback_plan or (component.rollback_plan if component else ""),
        flag_key=_flag_key_clean(flag_key),
        scheduled_for=scheduled_for,
        created_by=actor,
    )
    change.full_clean(exclude=["number"])
    with transaction.atomic():
        _insert_numbered(change)
        PromotionLogEntry.objects.create(change=change, actor=actor, from_status="", to_status=S.DRAFT, why=why)
        audit_record(
            actor=actor,
            action="change.create",
            target=change_target(change),
            detail={
                "title": change.title, "severity": change.severity, "component": change.component_id,
                "issue": str(change.issue_id) if change.issue_id else None, "why": why,
                **({"scheduled_for": scheduled_for.isoformat()} if scheduled_for else {}),
            },
        )  # fmt: skip
    return change


def change_transition(*, change: Change, to: str, actor: str, why: str) -> Change:
    """Move `change` from the status the caller read to `to`.

    Raises ChangeTransitionError for a move TRANSITIONS does not allow, and its subclass
    ChangeTransitionConflict when the change moved since the caller read it (a duplicate or
    concurrent move: only the first applies).
    """
    source = change.status
    if to not in TRANSITIONS:
        raise ChangeTransitionError(key=change.key, from_status=source, to_status=to, note=" (no such status)")
    if to not in TRANSITIONS[source]:
        raise ChangeTransitionError(key=change.key, from_status=source, to_status=to)
    now = timezone.now()
    with transaction.atomic():
        if not Change.objects.filter(pk=change.pk, status=source).update(status=to, updated_at=now):
            current = Change.objects.filter(pk=change.pk).values_list("status", flat=True).first()
            raise ChangeTransitionConflict(
                key=change.key, from_status=source, to_status=to, note=f" any more: it has moved to {current} since"
            )
        entry = PromotionLogEntry.objects.create(
            change=change, actor=actor, from_status=source, to_status=to, why=why, created_at=now
        )
        audit_record(
            actor=actor,
            action="change.transition",
            target=change_target(change),
            detail={"from": source, "to": to, "why": why, "promotion": entry.pk},
        )
    change.status, change.updated_at = to, now
    return change


def _jsonable(value: Any) -> Any:
    if isinstance(value, Component | Issue):
        return str(value.pk)
    return value


def change_update(*, change: Change, fields: Mapping[str, Any], actor: str) -> Change:
    """Edit a change's description (EDITABLE_FIELDS; its status moves only by change_transition).
    A new patch clears the previous one's submission and approval."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: "Not editable." for name in sorted(unknown)})
    with transaction.atomic():
        current = Change.objects.select_for_update().get(pk=change.pk)
        if not TRANSITIONS[current.status]:
            raise ChangeError(f"{current.key} is {current.status}: a finished change is not edited.")
        frozen = set(fields) & set(CONTENT_FIELDS)
        if frozen and current.status not in CONTENT_EDITABLE_STATUSES:
            raise ChangeError(
                f"{current.key} is {current.status}: {', '.join(sorted(frozen))} can change only while "
                f"{', '.join(CONTENT_EDITABLE_STATUSES)} (move it back to in_progress first)."
            )
        values = dict(fields)
        if "plan" in values:
            values["plan"] = plan_clean(values["plan"] or [])
        if "severity" in values:
            values["severity"] = severity_parse(values["severity"])
        if "flag_key" in values:
            values["flag_key"] = _flag_key_clean(values["flag_key"] or "")
        before = fields_read(current, values, as_value=_jsonable)
        for name, value in values.items():
            setattr(current, name, value)
        current.full_clean()
        diff = changes_between(before, fields_read(current, values, as_value=_jsonable))
        changed = list(diff["after"])
        if not changed:
            return current
        if {"patch_summary", "patch_diff"} & set(changed):
            current.patch_state, current.patch_build_id, current.patch_error = PatchState.NONE, "", ""
            current.patch_submitted_at, current.patch_approved_by, current.patch_approved_at = None, "", None
            changed += ["patch_state", "patch_build_id", "patch_error", "patch_submitted_at", "patch_approved_by",
                        "patch_approved_at"]  # fmt: skip
        current.updated_at = timezone.now()
        current.save(update_fields=[*changed, "updated_at"])
        audit_record(
            actor=actor,
            action="change.update",
            target=change_target(current),
            detail=diff,
        )
    return current


def change_record_scorecard(
    *,
    change: Change,
    actor: str,
    verification: Mapping[str, Any] | None = None,
    metrics_before: Mapping[str, Any] | None = None,
    metrics_after: Mapping[str, Any] | None = None,
    diagnosis: Mapping[str, Any] | None = None,
    held: list[Mapping[str, Any]] | None = None,
) -> Change:
    """Merge what was measured into the scorecard; parts not given are kept. `diagnosis` is what
    the fix came from (level, pattern, affected user); `held` the steps waiting for the owner."""
    with transaction.atomic():
        current = Change.objects.select_for_update().get(pk=change.pk)
        scorecard = dict(current.scorecard)
        if verification is not None:
            scorecard["verification"] = dict(verification)
        if diagnosis is not None:
            scorecard["diagnosis"] = dict(diagnosis)
        if held is not None:
            scorecard["held"] = [dict(step) for step in held]
        metrics = dict(scorecard.get("metrics", {}))
        if metrics_before is not None:
            metrics["before"] = dict(metrics_before)
        if metrics_after is not None:
            metrics["after"] = dict(metrics_after)
        if metrics:
            scorecard["metrics"] = metrics
        scorecard["recorded_at"] = timezone.now().isoformat()
        current.scorecard, current.updated_at = scorecard, timezone.now()
        current.save(update_fields=["scorecard", "updated_at"])
        audit_record(actor=actor, action="change.scorecard", target=change_target(current), detail=scorecard)
    change.scorecard, change.updated_at = current.scorecard, current.updated_at
    return change


def _spec_problems(exc: SpecError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
