"""Remediation by calling the owner: a webhook they defined (a RemediationHook) does what only
their product can — resync a payment, rebuild a cache, requeue a job.

The protocol, for the owner's side:

- POST, JSON body {"delivery", "hook", "params", "user_id", "project", "issue", "change", "sent_at"};
  an undo carries {"undo": …, "undo_of": <the delivery undone>} instead of "params".
- `X-Kaizen-Signature: sha256=<hex HMAC-SHA256 of the raw body with the hook's secret>`, as GitHub
  signs webhooks; `X-Kaizen-Delivery` is unique per call, for the owner to deduplicate on.
- Answer 2xx with a JSON object. It may hold "detail" (a line for the console) and "undo" (an
  object handed back on undo); without "undo" the step cannot be undone.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q
from django.utils import timezone
from pydantic import Field

from healing.models import Project, RemediationHook, RiskLevel
from healing.remediation.base import Action, Outcome, Params, RemediationContext, RemediationError, register
from healing.remediation.json_schema import SchemaError, schema_parse, schema_problems
from kaizen_site.webhooks import EXCERPT_CHARS, WebhookError, webhook_post


class HookError(Exception):
    def __init__(self, message: str, *, transient: bool, result: Mapping[str, Any]) -> None:
        self.transient, self.result = transient, dict(result)
        super().__init__(f"{message} ({'transient' if transient else 'permanent'})")


@dataclass(frozen=True)
class HookAnswer:
    data: dict[str, Any]
    result: dict[str, Any]  # delivery, status, body excerpt, duration: what the run row keeps


class OwnerHookClient:
    """Calls an owner's hook through the project's one webhook client and reads the answer."""

    def post(self, *, hook: RemediationHook, payload: dict[str, Any]) -> HookAnswer:
        delivery = payload["delivery"]
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        result: dict[str, Any] = {"delivery": delivery, "url": hook.url}
        try:
            answer = webhook_post(url=hook.url, body=body, read_timeout=hook.timeout_seconds, name=hook.name,
                                  secret=hook.secret, delivery=delivery)  # fmt: skip
            result.update(status=answer.status, body=answer.text[:EXCERPT_CHARS], duration_ms=answer.duration_ms)
            return HookAnswer(data=answer.json_object(name=hook.name), result=result)
        except WebhookError as exc:
            if exc.status is not None:
                result.update(status=exc.status, body=exc.text)
            result["duration_ms"] = exc.duration_ms
            raise HookError(exc.reason, transient=exc.transient, result=result) from exc


def hook_for(*, name: str, project: Project | None) -> RemediationHook | None:
    """The project's own hook of that name, else the global one."""
    hooks = RemediationHook.objects.filter(name=name, enabled=True)
    hooks = hooks.filter(Q(project=project) | Q(project__isnull=True)) if project else hooks.filter(project=None)
    return hooks.order_by(F("project").asc(nulls_last=True)).first()


def hook_param_problems(hook: RemediationHook, params: Mapping[str, Any]) -> list[str]:
    if not hook.param_schema:
        return []
    try:
        schema = schema_parse(hook.param_schema)
    except SchemaError as exc:
        return [f"the hook's param schema is unusable: {exc}"]
    return schema_problems(dict(params), schema)


class WebhookParams(Params):
    hook: str = Field(pattern=r"^[-a-zA-Z0-9_]+$", max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


def _envelope(hook: RemediationHook, context: RemediationContext) -> dict[str, Any]:
    project = context.target_project
    return {
        "delivery": uuid.uuid4().hex,
        "hook": hook.name,
        "user_id": context.user_id or None,
        "project": project.slug if project else None,
        "issue": str(context.issue.pk) if context.issue else None,
        "change": context.change.key if context.change else None,
        "sent_at": timezone.now().isoformat(),
    }


@register
class WebhookCall(Action):
    name = "webhook_call"
    risk = RiskLevel.MEDIUM  # what it does is the owner's code
    summary = "Call one of the owner's remediation webhooks (signed), with params its schema allows."
    Params = WebhookParams
    per_user = True  # the hook is called for the affected user (the envelope names them)

    def check(self, params: WebhookParams, *, project: Project | None) -> list[str]:
        if project is None:
            return []  # a global plan: the hook is looked up in the project it runs for
        hook = hook_for(name=params.hook, project=project)
        if hook is None:
            return [f'no enabled webhook "{params.hook}" for project {project.slug}']
        return hook_param_problems(hook, params.params)

    def _hook(self, name: str, context: RemediationContext) -> RemediationHook:
        hook = hook_for(name=name, project=context.target_project)
        if hook is None:
            raise RemediationError(f'No enabled webhook "{name}" for this project.')
        return hook

    def run(self, params: WebhookParams, context: RemediationContext) -> Outcome:
        hook = self._hook(params.hook, context)
        problems = hook_param_problems(hook, params.params)
        if problems:
            raise RemediationError(f"The params do not fit {hook.name}'s schema: {'; '.join(problems)}")
        payload = {**_envelope(hook, context), "params": params.params}
        try:
            answer = OwnerHookClient().post(hook=hook, payload=payload)
        except HookError as exc:
            raise RemediationError(str(exc), result=exc.result) from exc
        undo = answer.data.get("undo")
        return Outcome(
            ok=True,
            detail=str(answer.data.get("detail") or f"{hook.name} answered {answer.result['status']}."),
            undo_data={"hook": hook.name, "undo": undo, "undo_of": payload["delivery"]}
            if isinstance(undo, dict)
            else None,
            result=answer.result,
        )

    def undo(self, undo_data: Mapping[str, Any], context: RemediationContext) -> Outcome:
        hook = self._hook(undo_data["hook"], context)
        payload = {**_envelope(hook, context), "undo": undo_data["undo"], "undo_of": undo_data["undo_of"]}
        try:
            answer = OwnerHookClient().post(hook=hook, payload=payload)
        except HookError as exc:
            raise RemediationError(str(exc), result=exc.result) from exc
        return Outcome(ok=True, detail=str(answer.data.get("detail") or "Undone by the hook."), result=answer.result)
