"""The flags API. Thin: validate, call flags.evaluate or flags.services, answer.

Reads authenticate with the project's public key (`X-Kaizen-Key` or `?key=`); changes also need
the owner (flags.authentication). Errors are `{"error": code, "detail": ...}` (kaizen_site.api).
"""

from django.core.exceptions import ValidationError as ModelValidationError
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from flags import evaluate, selectors, services
from flags.authentication import IsProjectOwner
from flags.probes import probe_forced_flags
from flags.serializers import (
    EvaluateRequest,
    EvaluateResponse,
    FlagOut,
    FlagsForUser,
    FlagUpdateBody,
    UserId,
    UserQuery,
    WhyBody,
)
from healing.authentication import ProjectKeyAuthentication
from kaizen_site.api import ErrorBody, JSONOnly

KEY_PARAM = OpenApiParameter("key", str, description="The project's public key (instead of `X-Kaizen-Key`).")
FLAG_KEY_PARAM = OpenApiParameter("flag_key", str, location=OpenApiParameter.PATH, description="The flag's key.")
PROBE_PARAM = OpenApiParameter(
    "X-Kaizen-Probe",
    str,
    location=OpenApiParameter.HEADER,
    description=(
        "Sandbox only, one use: `<base64url claims>.<hex HMAC-SHA256>` bound to the project, method and path "
        "(see flags.probes); forces the claimed flag on for the claimed user."
    ),
)
OWNER_DOC = (
    " Owner only: the project's secret key as `Authorization: Bearer <secret>`, or a console session"
    " holding the `flags.change_flag` permission."
)
USER_ID_MAX = UserId["max_length"]
# What a console session needs, per method: the permission the console itself asks for the same change.
CHANGE_FLAG = ["flags.change_flag"]


class UnknownFlagError(APIException):
    status_code = status.HTTP_404_NOT_FOUND
    error_code = "unknown_flag"

    def __init__(self, exc: evaluate.UnknownFlag):
        super().__init__(detail=f"Unknown flag: {', '.join(exc.keys)}.")


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _user_param(request) -> str:
    """The `user` query parameter. A plain valid one is taken as it is; anything else goes through
    UserQuery, which answers exactly as before (400 `invalid`). The serializer is a fifth of an
    evaluation's CPU, and this is the busiest read."""
    user = request.query_params.get("user")
    if user and len(user) <= USER_ID_MAX and user.isprintable():  # no NUL, no lone surrogate
        return user
    return _validated(UserQuery, request.query_params)["user"]


def _none_match(header: str | None, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 §13.1.2): W/"x" matches "x".
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.removeprefix("W/") == etag for tag in parse_etags(header))


class FlagsView(APIView):
    authentication_classes = [ProjectKeyAuthentication]
    permission_classes: list = []
    content_negotiation_class = JSONOnly


class FlagsForUserView(FlagsView):
    @extend_schema(
        operation_id="flags_for_user",
        summary="All flags for one user",
        description=(
            "Every flag of the project, evaluated for `user`. Answers carry an `ETag`; send it back in "
            "`If-None-Match` and an unchanged answer is a bodiless 304."
        ),
        parameters=[OpenApiParameter("user", str, required=True, description="The user id."), KEY_PARAM, PROBE_PARAM],
        responses={
            200: FlagsForUser,
            304: OpenApiResponse(description="Unchanged since the ETag in If-None-Match."),
            400: ErrorBody,
            401: ErrorBody,
            403: ErrorBody,
        },
    )
    def get(self, request):
        user_id = _user_param(request)
        forced = probe_forced_flags(request, project_id=request.auth.project_id)
        snapshot = evaluate.project_snapshot(project_id=request.auth.project_id)
        headers = {"Cache-Control": "private, no-cache"}
        if not forced:  # a probe's answer is for that request alone: never cacheable
            headers["ETag"] = evaluate.user_etag(snapshot=snapshot, user_id=user_id)
            if _none_match(request.META.get("HTTP_IF_NONE_MATCH"), headers["ETag"]):
                return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        flags = evaluate.flags_for_user(snapshot=snapshot, user_id=user_id, forced=forced)
        return Response({"user": user_id, "version": snapshot.version, "flags": flags}, headers=headers)


class FlagsEvaluateView(FlagsView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="flags_evaluate",
        summary="Evaluate flags for users, in a batch",
        description="Up to 1000 `{flag, user}` pairs in one call. Any unknown flag fails the whole batch (404).",
        parameters=[KEY_PARAM, PROBE_PARAM],
        request=EvaluateRequest,
        responses={200: EvaluateResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody},
    )
    def post(self, request):
        items = [(item["flag"], item["user"]) for item in _validated(EvaluateRequest, request.data)["items"]]
        forced = probe_forced_flags(request, project_id=request.auth.project_id)
        snapshot = evaluate.project_snapshot(project_id=request.auth.project_id)
        try:
            results = evaluate.flags_evaluate(snapshot=snapshot, items=items, forced=forced)
        except evaluate.UnknownFlag as exc:
            raise UnknownFlagError(exc) from exc
        return Response(
            {
                "version": snapshot.version,
                "results": [
                    {"flag": flag, "user": user, "enabled": result.enabled, "reason": result.reason}
                    for (flag, user), result in zip(items, results, strict=True)
                ],
            }
        )


class OwnerFlagView(FlagsView):
    permission_classes = [IsProjectOwner]
    parser_classes = [JSONParser]

    def flag(self, request, flag_key: str):
        try:
            return selectors.flag_get(project_id=request.auth.project_id, key=flag_key)
        except evaluate.UnknownFlag as exc:
            raise UnknownFlagError(exc) from exc


class FlagDetailView(OwnerFlagView):
    owner_permissions = {"PATCH": CHANGE_FLAG}

    @extend_schema(
        operation_id="flag_update",
        summary="Change a flag",
        description="Enable or disable a flag, set its rollout percentage (0–100), status or description." + OWNER_DOC,
        parameters=[FLAG_KEY_PARAM, KEY_PARAM],
        request=FlagUpdateBody,
        responses={200: FlagOut, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody},
    )
    def patch(self, request, flag_key: str):
        changes = dict(_validated(FlagUpdateBody, request.data))
        why = changes.pop("why", "")
        flag = self.flag(request, flag_key)
        try:
            flag = services.flag_update(flag=flag, changes=changes, actor=request.kaizen_actor, why=why)
        except ModelValidationError as exc:
            raise ApiValidationError(exc.message_dict) from exc
        return Response(FlagOut(flag).data)


class FlagKillView(OwnerFlagView):
    owner_permissions = {"POST": CHANGE_FLAG}

    @extend_schema(
        operation_id="flag_kill",
        summary="Kill switch",
        description="Turns the flag off for everyone at once, per-user overrides included." + OWNER_DOC,
        parameters=[FLAG_KEY_PARAM, KEY_PARAM],
        request=WhyBody,
        responses={200: FlagOut, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody},
    )
    def post(self, request, flag_key: str):
        why = _validated(WhyBody, request.data).get("why") or "Kill switch pulled over the API."
        flag = services.flag_kill(flag=self.flag(request, flag_key), actor=request.kaizen_actor, why=why)
        return Response(FlagOut(flag).data)
