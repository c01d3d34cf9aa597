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

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from django.db.models import F, Q
from django.utils import timezone
from pydantic import Field

from ..models import Project, RemediationHook, RiskLevel
from ..patch_executor import DELIVERY_HEADER, SIGNATURE_HEADER
from .base import Action, Outcome, Params, RemediationContext, RemediationError, register
from .json_schema import SchemaError, schema_parse, schema_problems

CONNECT_TIMEOUT = 5.0  # seconds; the read timeout is the hook's own
EXCERPT_CHARS = 500  # of the answer, kept on the run


def hook_signature(body: bytes, *, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HookError(Exception):
    def __init__(self, message: str, *, transient: bool, result: Mapping[str, Any]) -> None:
        self.transient, self.result = transient, dict(result)
        super().__init__(f"{message} ({'transient' if transient else 'permanent'})")


@dataclass(frozen=True)
class HookAnswer:
    data: dict[str, Any]
    result: dict[str, Any]  # delivery, status, body excerpt, duration: what the run row keeps


class OwnerHookClient:
    """The one seam to owners' webhooks: signs, sends with explicit timeouts, reads the answer."""

    def post(self, *, hook: RemediationHook, payload: dict[str, Any]) -> HookAnswer:
        delivery = payload["delivery"]
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: hook_signature(body, secret=hook.secret),
            DELIVERY_HEADER: delivery,
        }
        result: dict[str, Any] = {"delivery": delivery, "url": hook.url}
        started = time.monotonic()
        try:
            # No redirects: requests would replay a 302 as a GET, and the call would do nothing.
            response = requests.post(
                hook.url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, hook.timeout_seconds),
                allow_redirects=False,
            )  # fmt: skip
        except requests.Timeout as exc:
            result["duration_ms"] = round((time.monotonic() - started) * 1000)
            raise HookError(f"{hook.name} did not answer within {hook.timeout_seconds:g} s", transient=True,
                            result=result) from exc  # fmt: skip
        except requests.RequestException as exc:
            raise HookError(f"could not reach {hook.name}: {exc}", transient=True, result=result) from exc
        result.update(
            status=response.status_code,
            body=response.text[:EXCERPT_CHARS],
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        if not 200 <= response.status_code < 300:
            transient = response.status_code >= 500 or response.status_code == 429
            raise HookError(f"{hook.name} answered HTTP {response.status_code}", transient=transient, result=result)
        try:
            data = response.json()
        except ValueError as exc:
            # It may well have done the work; unconfirmed is reported as failed, for the owner to check.
            raise HookError(f"{hook.name} answered {response.status_code} but not with JSON", transient=False,
                            result=result) from exc  # fmt: skip
        if not isinstance(data, dict):
            raise HookError(f"{hook.name} answered with JSON that is not an object", transient=False, result=result)
        return HookAnswer(data=data, result=result)


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
