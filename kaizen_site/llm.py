"""The one seam to Anthropic: the client is built here and nowhere else, and every call is logged.

`llm_call` records one LLMCall row per attempt, success or failure, and turns the SDK's errors
into one exception, `LLMError`, that says whether trying again later can help. Run it outside a
transaction: an LLMError raised through an atomic block would roll back the row that records it.
"""

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

import anthropic
import httpx2
from anthropic.types import Message
from django.conf import settings

from kaizen_site.models import LLMCall

LLM_OFF = "LLM diagnosis off: ANTHROPIC_API_KEY not set"

# A retry-after longer than this is not slept on inside the SDK: the call fails as transient and
# the Celery task retries later, so a rate limit never holds a worker for minutes.
SDK_WAIT_CAP_SECONDS = 10.0

# Statuses worth retrying later, as the SDK's own retry policy has them (408 request timeout,
# 409 lock timeout, 429 rate limit, 5xx including 529 overloaded).
# https://platform.claude.com/docs/en/api/errors
TRANSIENT_STATUSES = frozenset({408, 409, 429})
TRANSIENT_ERROR_TYPES = frozenset({"rate_limit_error", "overloaded_error", "api_error", "timeout_error"})

CACHE_WRITE_FACTOR = Decimal("1.25")  # 5-minute cache write, relative to the input price
CACHE_READ_FACTOR = Decimal("0.1")
MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelInfo:
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    # The 5.5-generation models answer tool_choice "tool"/"any" with a 400 ("Forced tool use
    # returns an error": https://platform.claude.com/docs/en/models/sonnet-5-5/whats-new-sonnet-5-5),
    # so a forced choice is sent to them as "auto" and the caller's validation catches a reply
    # without the tool call.
    forced_tool_choice: bool = True


# Standard (non-batch) prices in USD per million tokens, from
# https://platform.claude.com/docs/en/about-claude/pricing and each model's page. Keyed by model id;
# a dated snapshot id (claude-sonnet-5-5-YYYYMMDD) takes its family's row. A model missing here
# still works: its calls are logged without a cost.
MODELS: dict[str, ModelInfo] = {
    "claude-fable-5-1": ModelInfo(Decimal("10"), Decimal("50"), forced_tool_choice=False),
    "claude-opus-5-5": ModelInfo(Decimal("4"), Decimal("20"), forced_tool_choice=False),
    "claude-sonnet-5-5": ModelInfo(Decimal("2"), Decimal("10"), forced_tool_choice=False),
    "claude-opus-5": ModelInfo(Decimal("5"), Decimal("25")),
    "claude-sonnet-5": ModelInfo(Decimal("2"), Decimal("10")),
    "claude-haiku-4-5": ModelInfo(Decimal("1"), Decimal("5")),
}


class LLMError(Exception):
    """A call to the model failed. `transient`: the same request may well succeed later (rate
    limit, overload, timeout, lost connection); otherwise it fails the same way every time (bad
    request, bad or unauthorised key). `retry_after`: seconds the API asked us to wait, if any."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.call: LLMCall | None = None  # the row recording the failed attempt


class InvalidOutput(ValueError):
    """Raised by a `validate` callable: the model answered, but not with something usable."""


@dataclass(frozen=True)
class LLMReply:
    message: Message
    call: LLMCall
    value: Any = None  # what `validate` returned
    problem: str = ""  # why `validate` rejected the answer; empty when it is valid


def model_info(model: str) -> ModelInfo | None:
    """The longest table key that is the id itself or a prefix of it followed by "-"."""
    matches = [key for key in MODELS if model == key or model.startswith(f"{key}-")]
    return MODELS[max(matches, key=len)] if matches else None


def llm_client(*, http_client: httpx2.Client | None = None) -> anthropic.Anthropic | None:
    """The Anthropic client, or None when no API key is configured (LLM features are off).

    `http_client` replaces the transport (tests pass an httpx2.MockTransport); without it the
    process shares one client and its connection pool.
    """
    key = settings.ANTHROPIC_API_KEY
    if not key:
        return None
    timeout, retries = float(settings.KAIZEN_LLM_TIMEOUT), int(settings.KAIZEN_LLM_MAX_RETRIES)
    if http_client is not None:
        return _build(key=key, timeout=timeout, retries=retries, http_client=http_client)
    return _shared_client(key, timeout, retries)


@lru_cache(maxsize=4)  # keyed on the settings: a new key or timeout builds a new client
def _shared_client(key: str, timeout: float, retries: int) -> anthropic.Anthropic:
    return _build(key=key, timeout=timeout, retries=retries, http_client=None)


def _build(*, key: str, timeout: float, retries: int, http_client: httpx2.Client | None) -> anthropic.Anthropic:
    # An explicit api_key also stops the SDK from looking for credentials in profile files.
    return anthropic.Anthropic(
        api_key=key,
        http_client=http_client,
        max_retries=retries,
        timeout=anthropic.Timeout(timeout, connect=min(timeout, 5.0)),
        middleware=[_no_long_sleeps],
    )


class _LongWait(Exception):
    def __init__(self, *, status: int, wait: float) -> None:
        super().__init__(f"{status}: the API asked to wait {wait:g} s")
        self.status, self.wait = status, wait


def _no_long_sleeps(request: anthropic.APIRequest, call_next: anthropic.CallNext) -> anthropic.APIResponse[Any]:
    # Runs once per HTTP attempt inside the SDK's retry loop. An exception that is not the SDK's
    # own ends the loop at once, instead of the SDK sleeping for whatever retry-after says.
    response = call_next(request)
    wait = _retry_after(response.headers)
    if response.status_code >= 400 and wait is not None and wait > SDK_WAIT_CAP_SECONDS:
        response.http_response.close()
        raise _LongWait(status=response.status_code, wait=wait)
    return response


def _retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds from retry-after-ms or retry-after (HTTP dates are left to the SDK)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    return None


def prompt_fingerprint(*, system: str, template: str, tools: Iterable[Mapping[str, Any]]) -> str:
    """Hash of what a prompt is built from, not of the data filled in: same version, same hash."""
    source = json.dumps({"system": system, "template": template, "tools": list(tools)}, sort_keys=True)
    return hashlib.sha256(source.encode()).hexdigest()


def cost_estimate(*, model: str, usage: Any) -> Decimal | None:
    info = model_info(model)
    if info is None:
        return None
    cache_write = Decimal(usage.cache_creation_input_tokens or 0) * CACHE_WRITE_FACTOR
    cache_read = Decimal(usage.cache_read_input_tokens or 0) * CACHE_READ_FACTOR
    tokens_in = Decimal(usage.input_tokens) + cache_write + cache_read
    cost = (tokens_in * info.input_usd_per_mtok + Decimal(usage.output_tokens) * info.output_usd_per_mtok) / MTOK
    return cost.quantize(Decimal("0.000001"))


def llm_call(
    *,
    purpose: str,
    system: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_choice: dict[str, Any],
    issue_id: UUID | str | None = None,
    http_client: httpx2.Client | None = None,
    template: str = "",
    attempt: int = 1,
    max_tokens: int = 4096,
    validate: Callable[[Message], Any] | None = None,
) -> LLMReply:
    """One request to the configured model, logged as one LLMCall row.

    `system` and `template` are the prompt's fixed parts (they make the fingerprint); the data
    goes in `messages`. `validate(message)` returns the usable value or raises InvalidOutput; its
    verdict is stored on the row. Raises LLMError when the request itself fails.
    """
    client = llm_client(http_client=http_client)
    if client is None:
        raise LLMError(LLM_OFF, transient=False)
    model = settings.KAIZEN_LLM_MODEL
    info = model_info(model)
    if tool_choice.get("type") in ("tool", "any") and info is not None and not info.forced_tool_choice:
        tool_choice = {**{k: v for k, v in tool_choice.items() if k != "name"}, "type": "auto"}
    row = LLMCall(
        purpose=purpose,
        model=model,
        prompt_fingerprint=prompt_fingerprint(system=system, template=template, tools=tools),
        attempt=attempt,
        issue_id=issue_id,
    )
    started = time.monotonic()
    try:
        message = client.messages.create(
            model=model,
            max_tokens=max_tokens,
            system=system,
            messages=messages,
            tools=tools,
            tool_choice=tool_choice,
        )
    except (anthropic.AnthropicError, _LongWait) as exc:
        error = _domain_error(exc)
        row.latency_ms = _ms_since(started)
        row.error = f"{'transient' if error.transient else 'permanent'}: {error}"
        row.save()
        error.call = row
        raise error from exc
    row.latency_ms = _ms_since(started)
    usage = message.usage
    row.tokens_in = usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    row.tokens_out = usage.output_tokens
    row.cost_usd = cost_estimate(model=model, usage=usage)
    row.request_id = message._request_id or ""
    value, problem = None, ""
    row.error = "validation did not finish"  # overwritten below unless validate itself crashes
    try:
        if validate is not None:
            value = validate(message)
    except InvalidOutput as exc:
        problem = row.error = str(exc) or "invalid output"
    else:
        row.valid, row.error = True, ""
    finally:
        row.save()
    return LLMReply(message=message, call=row, value=value, problem=problem)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _domain_error(exc: Exception) -> LLMError:
    if isinstance(exc, _LongWait):
        return LLMError(str(exc), transient=True, retry_after=exc.wait)
    if isinstance(exc, anthropic.APITimeoutError):  # before its parent, APIConnectionError
        return LLMError(f"timed out after {settings.KAIZEN_LLM_TIMEOUT:g} s", transient=True)  # per HTTP attempt
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMError(f"connection failed: {exc.__cause__ or exc}", transient=True)
    if isinstance(exc, anthropic.APIStatusError):
        kind = exc.type or ""
        transient = exc.status_code in TRANSIENT_STATUSES or exc.status_code >= 500 or kind in TRANSIENT_ERROR_TYPES
        return LLMError(
            f"{f'{exc.status_code} {kind}'.strip()}: {exc.api_message or exc.message}",
            transient=transient,
            retry_after=_retry_after(exc.response.headers),
        )
    # Anything else the SDK raises (a malformed response, missing credentials) will not fix itself.
    return LLMError(f"{type(exc).__name__}: {exc}", transient=False)
