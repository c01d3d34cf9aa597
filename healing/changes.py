"""Changes (Kaizen tickets): creating them, moving them through their lifecycle, their scorecard,
handing their code patch to the executor, and the components they touch.

Every status move goes through `change_transition`: checked against TRANSITIONS, applied with a
conditional UPDATE (so a duplicate or concurrent move applies once), recorded in the promotion
log and the audit log in the same transaction.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as SpecError

from flags.models import KEY_PATTERN as FLAG_KEY_PATTERN

from .audit import audit_record
from .models import (
    CHANGE_KEY_PREFIX,
    Change,
    ChangeStatus,
    Component,
    Issue,
    PatchState,
    PromotionLogEntry,
    Severity,
)

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


class ComponentSpecError(ChangeError):
    def __init__(self, *, source: str, field: str, problem: str) -> None:
        self.source, self.field = source, field
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


@dataclass(frozen=True)
class PatchSpec:
    summary: str  # markdown
    diff: str  # unified diff


class RemediationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class ComponentSpec(BaseModel):
    """A component as written in its YAML file or on the command line."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id: str = Field(pattern=r"^[-a-zA-Z0-9_]+$", max_length=100)
    name: str = Field(min_length=1, max_length=200)
    tier: int = Field(ge=1, le=3)
    owner: str = Field(default="", max_length=200)
    slo: dict[str, float] = Field(default_factory=dict)
    rollback_plan: str = ""


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


def _target(change: Change) -> str:
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
) -> Change:
    """Open a ticket (a draft). Owner and rollback plan default to the component's. A fix for an
    issue is a Change linked to it."""
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
        created_by=actor,
    )
    change.full_clean(exclude=["number"])
    with transaction.atomic():
        _insert_numbered(change)
        PromotionLogEntry.objects.create(change=change, actor=actor, from_status="", to_status=S.DRAFT, why=why)
        audit_record(
            actor=actor,
            action="change.create",
            target=_target(change),
            detail={
                "title": change.title, "severity": change.severity, "component": change.component_id,
                "issue": str(change.issue_id) if change.issue_id else None, "why": why,
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
            target=_target(change),
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
        before = {name: _jsonable(getattr(current, name)) for name in values}
        for name, value in values.items():
            setattr(current, name, value)
        current.full_clean()
        changed = [name for name in values if _jsonable(getattr(current, name)) != before[name]]
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
            target=_target(current),
            detail={
                "before": {name: before[name] for name in changed if name in before},
                "after": {name: _jsonable(getattr(current, name)) for name in changed if name in before},
            },
        )
    return current


def change_record_scorecard(
    *,
    change: Change,
    actor: str,
    verification: Mapping[str, Any] | None = None,
    metrics_before: Mapping[str, Any] | None = None,
    metrics_after: Mapping[str, Any] | None = None,
) -> Change:
    """Merge what was measured into the scorecard; parts not given are kept."""
    with transaction.atomic():
        current = Change.objects.select_for_update().get(pk=change.pk)
        scorecard = dict(current.scorecard)
        if verification is not None:
            scorecard["verification"] = dict(verification)
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
        audit_record(actor=actor, action="change.scorecard", target=_target(current), detail=scorecard)
    change.scorecard, change.updated_at = current.scorecard, current.updated_at
    return change


# --- The code patch: Kaizen never applies one itself -------------------------------------------

EXECUTOR_TIMEOUT = (5, 30)  # seconds to connect, to answer: the executor only queues a build
SIGNATURE_HEADER = "X-Kaizen-Signature"  # "sha256=" + hex HMAC-SHA256 of the raw body, as GitHub signs webhooks
DELIVERY_HEADER = "X-Kaizen-Delivery"  # the same for every resend of one patch: the executor deduplicates on it
SUBMITTABLE = (PatchState.NONE, PatchState.AWAITING_APPROVAL, PatchState.APPROVED, PatchState.FAILED)
NOT_CONFIGURED = "Patch executor not configured: waiting for the owner's approval"


class PatchExecutorError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(f"{message} ({'transient' if transient else 'permanent'})")


def patch_executor_configured() -> bool:
    return bool(settings.KAIZEN_PATCH_EXECUTOR_URL)


def patch_signature(body: bytes, *, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _patch_delivery(change: Change) -> str:
    return f"{change.key}:{hashlib.sha256(change.patch_diff.encode()).hexdigest()[:16]}"


def _patch_body(change: Change) -> bytes:
    payload = {
        "delivery": _patch_delivery(change),
        "change": change.key,
        "title": change.title,
        "severity": change.severity,
        "component": change.component_id,
        "issue": str(change.issue_id) if change.issue_id else None,
        "flag_key": change.flag_key or None,
        "patch": {"summary": change.patch_summary, "diff": change.patch_diff},
        "rollback_plan": change.rollback_plan,
        "sent_at": timezone.now().isoformat(),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _post_patch(body: bytes, *, delivery: str) -> str:
    """Send the patch; the executor's build id, or PatchExecutorError."""
    secret = settings.KAIZEN_PATCH_EXECUTOR_SECRET
    if not secret:
        raise PatchExecutorError(
            "KAIZEN_PATCH_EXECUTOR_SECRET is empty: a patch is never sent unsigned", transient=False
        )
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: patch_signature(body, secret=secret),
        DELIVERY_HEADER: delivery,
    }
    try:
        # No redirects: requests would follow a 302 as a GET, and the patch would go nowhere.
        response = requests.post(
            settings.KAIZEN_PATCH_EXECUTOR_URL, data=body, headers=headers, timeout=EXECUTOR_TIMEOUT,
            allow_redirects=False,
        )  # fmt: skip
    except requests.Timeout as exc:
        raise PatchExecutorError(f"the executor did not answer within {EXECUTOR_TIMEOUT[1]} s", transient=True) from exc
    except requests.RequestException as exc:
        raise PatchExecutorError(f"could not reach the executor: {exc}", transient=True) from exc
    if response.status_code >= 300:
        transient = response.status_code >= 500 or response.status_code == 429
        raise PatchExecutorError(
            f"the executor answered HTTP {response.status_code}: {response.text[:300]}", transient=transient
        )
    try:
        answer = response.json()
    except ValueError as exc:
        raise PatchExecutorError(
            f"the executor's answer is not JSON: {response.text[:300]!r}", transient=False
        ) from exc
    build_id = answer.get("build_id") if isinstance(answer, dict) else None
    if not isinstance(build_id, str | int) or isinstance(build_id, bool) or not str(build_id).strip():
        raise PatchExecutorError(f"the executor's answer has no build_id: {response.text[:300]}", transient=False)
    return str(build_id)


def _patch_check(change: Change) -> None:
    if not change.patch_diff.strip():
        raise ChangeError(f"{change.key} has no code patch.")
    if change.status != S.IN_REVIEW:
        raise ChangeError(f"{change.key} is {change.status}: a patch goes out while its change is in_review.")


def change_submit_patch(*, change: Change, actor: str) -> Change:
    """Hand the patch to the executor (KAIZEN_PATCH_EXECUTOR_URL) and record its build id or the
    error. With no executor the change waits, in review, for the owner's approval."""
    _patch_check(change)
    if not patch_executor_configured():
        with transaction.atomic():
            waiting = Change.objects.filter(pk=change.pk, patch_state__in=(PatchState.NONE, PatchState.FAILED))
            if waiting.update(patch_state=PatchState.AWAITING_APPROVAL, updated_at=timezone.now()):
                audit_record(
                    actor=actor, action="change.patch.wait", target=_target(change), detail={"why": NOT_CONFIGURED}
                )
        change.refresh_from_db()
        return change

    # Claimed with a conditional UPDATE, outside any transaction held across the HTTP call: two
    # submitters cannot both send, and the row is never locked while the executor answers.
    claimed = Change.objects.filter(pk=change.pk, status=S.IN_REVIEW, patch_state__in=SUBMITTABLE).update(
        patch_state=PatchState.SENDING, updated_at=timezone.now()
    )
    change.refresh_from_db()  # what is sent is the patch as stored now
    if not claimed:
        raise ChangeError(f"{change.key}: its patch is {change.get_patch_state_display()}; not sent again.")
    delivery = _patch_delivery(change)
    outcome: dict[str, Any]
    try:
        build_id = _post_patch(_patch_body(change), delivery=delivery)
    except PatchExecutorError as exc:
        outcome = {"patch_state": PatchState.FAILED, "patch_error": str(exc)}
        detail = {"delivery": delivery, "error": str(exc), "transient": exc.transient}
    else:
        outcome = {"patch_state": PatchState.SUBMITTED, "patch_build_id": build_id, "patch_error": ""}
        detail = {"delivery": delivery, "build_id": build_id}
    now = timezone.now()
    with transaction.atomic():
        Change.objects.filter(pk=change.pk, patch_state=PatchState.SENDING).update(
            **outcome, patch_submitted_at=now, updated_at=now
        )
        action = "change.patch.submit" if outcome["patch_state"] == PatchState.SUBMITTED else "change.patch.fail"
        audit_record(actor=actor, action=action, target=_target(change), detail=detail)
    change.refresh_from_db()
    return change


def change_approve_patch(*, change: Change, actor: str) -> Change:
    """The owner approves the patch. With an executor configured it is then sent to it;
    without one the owner applies it, and the approval is the record that they did."""
    _patch_check(change)
    now = timezone.now()
    with transaction.atomic():
        approvable = (PatchState.NONE, PatchState.AWAITING_APPROVAL, PatchState.FAILED)
        approved = Change.objects.filter(pk=change.pk, status=S.IN_REVIEW, patch_state__in=approvable).update(
            patch_state=PatchState.APPROVED, patch_approved_by=actor, patch_approved_at=now, updated_at=now
        )
        if not approved:
            change.refresh_from_db()
            raise ChangeError(f"{change.key}: its patch is {change.get_patch_state_display()}; nothing to approve.")
        audit_record(actor=actor, action="change.patch.approve", target=_target(change), detail={})
    change.refresh_from_db()
    if patch_executor_configured():
        return change_submit_patch(change=change, actor=actor)
    return change


# --- Components ---------------------------------------------------------------------------------


def _spec_problems(exc: SpecError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())


def component_spec_parse(data: Any, *, source: str) -> ComponentSpec:
    """Validate one component's fields; the error names the source and the first bad field."""
    if not isinstance(data, Mapping):
        raise ComponentSpecError(source=source, field="", problem="expected a mapping of component fields")
    try:
        return ComponentSpec.model_validate(dict(data))
    except SpecError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ComponentSpecError(source=source, field=where, problem=first["msg"]) from exc


def component_save(*, spec: ComponentSpec, actor: str) -> tuple[Component, bool]:
    """Create the component or bring it to `spec`; True when created. Audited when anything changed."""
    values = spec.model_dump(exclude={"id"})
    component = Component.objects.select_for_update().filter(pk=spec.id).first()
    if component is None:
        component = Component(id=spec.id, **values)
        component.full_clean()
        component.save(force_insert=True)
        audit_record(actor=actor, action="component.create", target=f"component:{spec.id}", detail=values)
        return component, True
    before = {name: getattr(component, name) for name in values}
    if before != values:
        for name, value in values.items():
            setattr(component, name, value)
        component.updated_at = timezone.now()
        component.full_clean()
        component.save()
        audit_record(
            actor=actor,
            action="component.update",
            target=f"component:{spec.id}",
            detail={"before": before, "after": values},
        )
    return component, False


def component_create(*, spec: ComponentSpec, actor: str) -> Component:
    with transaction.atomic():
        if Component.objects.filter(pk=spec.id).exists():
            raise ChangeError(f"Component {spec.id} exists already.")
        return component_save(spec=spec, actor=actor)[0]


def component_ensure(*, spec: ComponentSpec, actor: str) -> Component:
    """The component with this id, created from `spec` if missing (an existing one is kept as is)."""
    with transaction.atomic():
        existing = Component.objects.filter(pk=spec.id).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                return component_save(spec=spec, actor=actor)[0]
        except IntegrityError:  # created meanwhile by someone else
            return Component.objects.get(pk=spec.id)


def components_load(*, paths: Sequence[Path], actor: str) -> list[Component]:
    """Create or update the components described in YAML files (one mapping, or a list of them,
    per file). Every file is validated before anything is written, and all are written in one
    transaction: a bad file leaves the components as they were."""
    specs: dict[str, tuple[ComponentSpec, str]] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ComponentSpecError(source=str(path), field="", problem=f"cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ComponentSpecError(source=str(path), field="", problem=f"not valid YAML{where}") from exc
        entries = data if isinstance(data, list) else [data]
        for index, entry in enumerate(entries):
            source = f"{path}[{index}]" if isinstance(data, list) else str(path)
            spec = component_spec_parse(entry, source=source)
            if spec.id in specs:
                also = specs[spec.id][1]
                raise ComponentSpecError(source=source, field="id", problem=f"{spec.id} is also defined in {also}")
            specs[spec.id] = (spec, source)
    with transaction.atomic():
        return [component_save(spec=spec, actor=actor)[0] for spec, _ in specs.values()]
