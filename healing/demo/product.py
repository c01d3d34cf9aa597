"""The demo product: a small app with three real bugs for the healing loop to fix.

It is also the sandbox that verification replays failing requests against. Each bug has a fix
behind a feature flag (or an owner webhook) that the healing loop can turn on per user:

1. "Generate" silently does nothing: the upstream AI service rate-limits bursts and nothing
   retries, so the job is dropped. Fix: flag `generate-retry` (retry with backoff).
2. Credits paid for don't show: the payment is taken at once but the provider's confirmation
   is delayed, so the balance lags. Fix: the owner webhook `resync-credits`.
3. "Session expired" right after logging in: the new login flow issues v2 session tokens and the
   session check only understands v1. Fix: flag `session-refresh-fix` (the v2-aware check).

As the sandbox (KAIZEN_SANDBOX_MODE), it honours the headers verification signs (`flags.probes`):
a probe forcing a fix on for one user, and the user a replay runs as, in place of credentials.
"""

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from flags.evaluate import flag_enabled
from flags.probes import probe_forced_flags, sandbox_user
from healing.models import Project
from kaizen_site.webhooks import webhook_signature_valid

DEMO_SLUG = "demo"
FLAG_GENERATE_RETRY = "generate-retry"
FLAG_SESSION_FIX = "session-refresh-fix"
HOOK_RESYNC_CREDITS = "resync-credits"
DEMO_FLAGS = {
    FLAG_GENERATE_RETRY: "Demo fix: retry the upstream AI call with backoff when it is rate-limited.",
    FLAG_SESSION_FIX: "Demo fix: accept the v2 session tokens the new login flow issues.",
}
SESSION_SALT = "kaizen.demo.session"
SESSION_MAX_AGE = 3600
RETRY_BACKOFF_SECONDS = 0.05


class UpstreamRateLimited(Exception):
    """The fake upstream's 429."""


class SessionExpired(Exception):
    pass


def demo_project_id() -> int | None:
    return Project.objects.filter(slug=DEMO_SLUG).values_list("id", flat=True).first()


def fix_enabled(*, request, flag_key: str, user_id: str) -> bool:
    """The flag as the product sees it: forced on by a verified sandbox probe, or evaluated."""
    project_id = demo_project_id()
    if project_id is None:
        return False
    if probe_forced_flags(request, project_id=project_id).get(flag_key) == user_id:
        return True
    return flag_enabled(project_id=project_id, key=flag_key, user_id=user_id)


def sandbox_identity(*, request) -> str | None:
    """The user a verification replay runs as (a signed X-Kaizen-Sandbox-User), or None."""
    project_id = demo_project_id()
    return None if project_id is None else sandbox_user(request, project_id=project_id)


# --- 1. Generate --------------------------------------------------------------------------------


def upstream_generate(*, prompt: str, attempt: int) -> str:
    """The upstream AI service. Every job arrives in a burst with others, so its first attempt is
    always over the upstream's rate limit; a retry after a short backoff gets through."""
    if attempt == 0:
        raise UpstreamRateLimited("429 Too Many Requests")
    return f"A picture of {prompt.strip() or 'nothing in particular'}, generated."


@dataclass(frozen=True)
class GenerateResult:
    result: str | None  # None: the job was dropped (the bug)


def generate(*, prompt: str, retry: bool) -> GenerateResult:
    try:
        return GenerateResult(result=upstream_generate(prompt=prompt, attempt=0))
    except UpstreamRateLimited:
        if not retry:
            return GenerateResult(result=None)  # the bug: accepted, then silently dropped
        time.sleep(RETRY_BACKOFF_SECONDS)
        return GenerateResult(result=upstream_generate(prompt=prompt, attempt=1))


# --- 2. Credits ---------------------------------------------------------------------------------


# Accounts live in the cache (Redis when there is one), which outlives the database: keyed by the
# demo project's creation, a fresh database (`make clean`, a new checkout) starts them afresh,
# and those of an earlier database expire.
ACCOUNT_SECONDS = 30 * 24 * 3600


def _account_key(user_id: str) -> str:
    created = Project.objects.filter(slug=DEMO_SLUG).values_list("created_at", flat=True).first()
    return f"kaizen:demo:account:{created.timestamp() if created else 0}:{user_id}"


def _account_at(key: str) -> dict[str, int]:
    return cache.get(key) or {"credits": 0, "pending": 0}


def account(*, user_id: str) -> dict[str, int]:
    return _account_at(_account_key(user_id))


def _account_change(*, user_id: str, change: Callable[[dict[str, int]], dict[str, int]]) -> dict[str, int]:
    """Apply `change` to the user's account; returns the new state (one look-up of the key)."""
    key = _account_key(user_id)
    state = change(_account_at(key))
    cache.set(key, state, timeout=ACCOUNT_SECONDS)
    return state


def purchase(*, user_id: str, credits: int) -> dict[str, int]:
    """The card is charged at once; the credits wait for the provider's confirmation, which in
    the demo never comes by itself (the sync delay the owner's webhook fixes)."""
    return _account_change(
        user_id=user_id, change=lambda state: {"credits": state["credits"], "pending": state["pending"] + credits}
    )


def credits_resync(*, user_id: str) -> dict[str, int]:
    """What the owner's `resync-credits` webhook does: ask the provider again and apply."""
    return _account_change(
        user_id=user_id, change=lambda state: {"credits": state["credits"] + state["pending"], "pending": 0}
    )


def hook_secret() -> str:
    """The demo's webhook secret (what the owner would configure in the RemediationHook)."""
    return (
        settings.KAIZEN_DEMO_HOOK_SECRET or hmac.new(settings.SECRET_KEY.encode(), b"demo-hook", "sha256").hexdigest()
    )


def hook_signature_valid(*, body: bytes, header: str) -> bool:
    return webhook_signature_valid(body=body, header=header, secret=hook_secret())


# --- 3. Sessions --------------------------------------------------------------------------------


def session_issue(*, user_id: str) -> str:
    """The new login flow: v2 tokens."""
    return signing.dumps({"u": user_id, "v": 2}, salt=SESSION_SALT)


def session_for_replay(*, user_id: str) -> str:
    """The session a verification replay runs with: the one the login flow issues to that user now.
    The replay carries no credentials, so the sandbox stands in the session the user would hold,
    and the check under test is the one that failed for them."""
    return session_issue(user_id=user_id)


def session_user(*, token: str, v2_aware: bool) -> str:
    try:
        claims = signing.loads(token, salt=SESSION_SALT, max_age=SESSION_MAX_AGE)
    except signing.BadSignature as exc:  # also SignatureExpired
        raise SessionExpired("Your session has expired. Please log in again.") from exc
    if claims.get("v", 1) != 1 and not v2_aware:
        raise SessionExpired("Your session has expired. Please log in again.")  # the bug
    return claims["u"]
