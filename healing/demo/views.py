"""The demo product's page and API (served under /demo/ when KAIZEN_DEMO is on).

Plain JSON views: this is the product Kaizen heals, not Kaizen's API. Users are named by an
`X-Demo-User` header after logging in, as a product's bearer token would name them. In the
sandbox, a verification replay is named by the signed X-Kaizen-Sandbox-User instead (see demo).
"""

import functools
import logging
import re

import orjson
from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from flags.probes import ProbeRefused
from healing.demo import product as demo
from healing.models import Project

logger = logging.getLogger("kaizen.demo")

USER_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def _error(status: int, error: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail}, status=status)


def _user(request: HttpRequest) -> str | None:
    replayed_as = demo.sandbox_identity(request=request)
    user = request.headers.get("X-Demo-User", "") if replayed_as is None else replayed_as
    return user if USER_PATTERN.match(user) else None


def _body(request: HttpRequest) -> dict:
    try:
        data = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _demo_only(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.KAIZEN_DEMO:
            raise Http404("The demo product is off (KAIZEN_DEMO).")
        return view(request, *args, **kwargs)

    return wrapper


def _logged_in(view):
    """Answers 401 without a user; the view gets the user's name."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        user = _user(request)
        if user is None:
            return _error(401, "not_logged_in", "Log in first.")
        return view(request, user, *args, **kwargs)

    return wrapper


def _guarded(view):
    """Demo only; a refused verification probe is a 403, never a silent pass or a 500."""

    @_demo_only
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ProbeRefused as exc:
            return _error(403, "probe_refused", str(exc.detail))

    return csrf_exempt(wrapper)


@_demo_only
@require_GET
def page(request: HttpRequest):
    project = Project.objects.filter(slug=demo.DEMO_SLUG).first()
    key = project.keys.filter(is_active=True).values_list("public_key", flat=True).first() if project else None
    # The detector opens the user's event stream there (the ASGI process); empty: the session answer's stream_url.
    return render(request, "demo/index.html", {"ingest_key": key or "", "stream_url": settings.KAIZEN_STREAM_URL})


@_guarded
@require_POST
def login(request: HttpRequest):
    user = str(_body(request).get("user", ""))
    if not USER_PATTERN.match(user):
        return _error(400, "invalid_user", "A user name of letters, digits and . _ @ - (at most 64).")
    return JsonResponse({"user": user, "token": demo.session_issue(user_id=user)})


@_guarded
@require_GET
def me(request: HttpRequest):
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    user = _user(request) or ""
    if not token and user and demo.sandbox_identity(request=request) == user:
        token = demo.session_for_replay(user_id=user)
    if not token:
        return _error(401, "not_logged_in", "Log in first.")
    try:
        name = demo.session_user(
            token=token,
            v2_aware=bool(user) and demo.fix_enabled(request=request, flag_key=demo.FLAG_SESSION_FIX, user_id=user),
        )
    except demo.SessionExpired as exc:
        return _error(401, "session_expired", str(exc))
    return JsonResponse({"user": name})


@_guarded
@require_POST
@_logged_in
def generate(request: HttpRequest, user: str):
    prompt = str(_body(request).get("prompt", ""))[:500]
    retry = demo.fix_enabled(request=request, flag_key=demo.FLAG_GENERATE_RETRY, user_id=user)
    outcome = demo.generate(prompt=prompt, retry=retry)
    if outcome.result is None:
        logger.info("demo generate dropped after an upstream 429", extra={"user": user})
        return JsonResponse({"status": "queued"}, status=202)  # ...and nothing ever comes
    return JsonResponse({"status": "done", "result": outcome.result})


@_guarded
@require_POST
@_logged_in
def purchase(request: HttpRequest, user: str):
    credits = _body(request).get("credits", 100)
    if isinstance(credits, bool) or not isinstance(credits, int) or not 1 <= credits <= 10_000:
        return _error(400, "invalid_credits", "Buy between 1 and 10,000 credits.")
    state = demo.purchase(user_id=user, credits=credits)
    return JsonResponse({"charged": credits, **state})


@_guarded
@require_GET
@_logged_in
def credits(request: HttpRequest, user: str):
    return JsonResponse(demo.account(user_id=user))


@csrf_exempt
@_demo_only
@require_POST
def hook_resync_credits(request: HttpRequest):
    """The owner's webhook Kaizen calls to fix scenario 2 (HMAC-signed by Kaizen)."""
    if not demo.hook_signature_valid(body=request.body, header=request.headers.get("X-Kaizen-Signature", "")):
        return _error(403, "bad_signature", "X-Kaizen-Signature does not match the body.")
    data = _body(request)
    user = str(data.get("user_id") or (data.get("params") or {}).get("user_id") or "")
    if not USER_PATTERN.match(user):
        return _error(400, "invalid_user", 'The body must name the user: {"user_id": ...}.')
    return JsonResponse({"user_id": user, **demo.credits_resync(user_id=user)})


urlpatterns = [
    path("", page, name="demo"),
    path("api/login", login),
    path("api/me", me),
    path("api/generate", generate),
    path("api/purchase", purchase),
    path("api/credits", credits),
    path("hooks/resync-credits", hook_resync_credits),
]
