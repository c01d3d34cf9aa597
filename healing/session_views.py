"""The session API the browser detector calls: sessions and their stream tokens, the user's
answers, session recordings and the outcome of page commands. Thin: validate, call
healing.stream.sessions (or healing.loop.replies), answer. The stream itself is
healing.stream.sse, served by the ASGI process.

Like ingest, every endpoint takes the project's public key (`?key=`, so a browser may post
`text/plain` JSON with no CORS preflight) and checks the browser's Origin against the project.
"""

import logging

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from healing.authentication import ProjectKeyAuthentication
from healing.ingest import bodies
from healing.ingest.bodies import parse_json
from healing.ingest.errors import IngestError, too_large
from healing.ingest.parsers import ReportJSONParser, body_read
from healing.loop.replies import needs_input_answer
from healing.stream import sessions
from healing.stream.schemas import (
    Accepted,
    SessionCommandOutcome,
    SessionCreate,
    SessionGranted,
    SessionRecordingUpload,
    SessionReply,
    SessionTokenRefresh,
    body_validate,
)
from healing.stream.tokens import TokenError
from kaizen_site.api import ErrorBody, JSONOnly

logger = logging.getLogger("kaizen.stream")

KEY_PARAMETER = OpenApiParameter("key", str, description="The project's public key (browsers).")
REFUSED = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 415: ErrorBody}


class SessionTextParser(ReportJSONParser):
    """JSON posted as text/plain: a "simple" request, no CORS preflight."""

    media_type = "text/plain"


class RecordingJSONParser(ReportJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json(body_read(stream, parser_context, limit=settings.KAIZEN_MAX_RECORDING_BYTES))


class RecordingTextParser(RecordingJSONParser):
    media_type = "text/plain"


def _token_refused(exc: TokenError) -> IngestError:
    return IngestError(exc.code, exc.detail, exc.status)


class SessionAPIView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnly
    authentication_classes = [ProjectKeyAuthentication]
    permission_classes: list = []
    throttle_classes: list = []
    parser_classes = [ReportJSONParser, SessionTextParser]
    body_limit_setting = "KAIZEN_MAX_BODY_BYTES"

    def initial(self, request, *args, **kwargs):
        bodies.chunked_body_buffer(request=request._request, limit=getattr(settings, self.body_limit_setting))
        super().initial(request, *args, **kwargs)
        if request.auth is None:
            raise PermissionDenied("A project key is required.")

    def handle_exception(self, exc):
        if isinstance(exc, TokenError):
            exc = _token_refused(exc)
        elif not isinstance(exc, APIException):
            logger.exception("session API failed")
            exc = IngestError("internal_error", "The request could not be processed.", 500)
        return super().handle_exception(exc)

    def body(self, request, model):
        if request.META.get("CONTENT_LENGTH") in (None, "", "0"):
            return body_validate(model, {})  # no body: as `{}` (a session for an anonymous user)
        if not request.content_type:
            raise IngestError("unsupported_media_type", "Send JSON (application/json or text/plain).", 415)
        return body_validate(model, request.data)


class SessionCreateView(SessionAPIView):
    @extend_schema(
        operation_id="session_create",
        summary="Start a user session",
        description=(
            "Mints a session for the page (the id is the server's, never the page's) and a short-lived "
            "stream token. `stream_url` is where the page opens its Server-Sent Events."
        ),
        parameters=[KEY_PARAMETER],
        request=SessionCreate,
        responses={201: SessionGranted, **REFUSED},
    )
    def post(self, request):
        body = self.body(request, SessionCreate)
        user = body.user.model_dump(exclude_none=True) if body.user else None
        session = sessions.session_create(project_id=request.auth.project_id, user=user,
                                          user_agent=request.headers.get("User-Agent", ""))  # fmt: skip
        return Response(sessions.session_answer(session=session), status=status.HTTP_201_CREATED)


class SessionTokenView(SessionAPIView):
    @extend_schema(
        operation_id="session_token_refresh",
        summary="Refresh a session's stream token",
        description="A current token, or one expired less than a day ago, gets a fresh one; `user` attaches the "
        "user once they log in.",
        parameters=[KEY_PARAMETER],
        request=SessionTokenRefresh,
        responses={200: SessionGranted, **REFUSED},
    )
    def post(self, request, session_id: str):
        body = self.body(request, SessionTokenRefresh)
        user = body.user.model_dump(exclude_none=True) if body.user else None
        session = sessions.session_refresh(project_id=request.auth.project_id, session_id=session_id,
                                           token=body.token, user=user)  # fmt: skip
        return Response(sessions.session_answer(session=session))


class SessionReplyView(SessionAPIView):
    @extend_schema(
        operation_id="session_reply",
        summary="Answer the question Kaizen asked",
        description="The user's answer when an issue needs input: recorded on the issue's timeline, and the issue "
        "is diagnosed again with it.",
        parameters=[KEY_PARAMETER],
        request=SessionReply,
        responses={202: Accepted, **REFUSED},
    )
    def post(self, request, session_id: str):
        body = self.body(request, SessionReply)
        session = sessions.session_authenticate(project_id=request.auth.project_id, session_id=session_id,
                                                token=body.token)  # fmt: skip
        issue = sessions.session_reported(session=session, issue_id=str(body.issue_id))
        needs_input_answer(issue=issue, session=session, text=body.text)
        return Response({"status": "accepted"}, status=status.HTTP_202_ACCEPTED)


class SessionRecordingView(SessionAPIView):
    parser_classes = [RecordingJSONParser, RecordingTextParser]
    body_limit_setting = "KAIZEN_MAX_RECORDING_BYTES"

    @extend_schema(
        operation_id="session_recording",
        summary="Upload a session recording",
        description="rrweb events recorded, with the user's consent, while they tried again; 413 over "
        "KAIZEN_MAX_RECORDING_BYTES.",
        parameters=[KEY_PARAMETER],
        request=SessionRecordingUpload,
        responses={202: Accepted, **REFUSED},
    )
    def post(self, request, session_id: str):
        size = int(request.META.get("CONTENT_LENGTH") or 0)
        if size > settings.KAIZEN_MAX_RECORDING_BYTES:
            raise too_large(f"A recording is at most {settings.KAIZEN_MAX_RECORDING_BYTES} bytes.")
        body = self.body(request, SessionRecordingUpload)
        session = sessions.session_authenticate(project_id=request.auth.project_id, session_id=session_id,
                                                token=body.token)  # fmt: skip
        issue = sessions.session_reported(session=session, issue_id=str(body.issue_id))
        events = [event for event in body.events]
        with transaction.atomic():
            sessions.recording_store(session=session, issue=issue, events=events, size=size)
        return Response({"status": "accepted"}, status=status.HTTP_202_ACCEPTED)


class SessionCommandView(SessionAPIView):
    @extend_schema(
        operation_id="session_command_outcome",
        summary="Report what the page did with a command",
        description="The page ran a command (`done`, `failed`) or refused one it does not know or that was "
        "malformed (`ignored`): logged, and shown to the owner in the audit log.",
        parameters=[KEY_PARAMETER],
        request=SessionCommandOutcome,
        responses={202: Accepted, **REFUSED},
    )
    def post(self, request, session_id: str):
        body = self.body(request, SessionCommandOutcome)
        session = sessions.session_authenticate(project_id=request.auth.project_id, session_id=session_id,
                                                token=body.token)  # fmt: skip
        sessions.command_outcome_record(session=session, command=body.command, outcome=body.outcome,
                                        reason=body.reason)  # fmt: skip
        return Response({"status": "accepted"}, status=status.HTTP_202_ACCEPTED)
