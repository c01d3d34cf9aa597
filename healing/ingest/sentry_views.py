"""Sentry-protocol endpoints: an app's stock Sentry SDK, its DSN pointed at Kaizen, reports here.

Thin: the SDK's key is checked against the URL's project, the body is read and split by
healing.ingest.sentry, the reports go through healing.ingest.accept like native ones, and the answer is what
the SDKs expect from Sentry (`{"id": ...}`, and on 429 the rate-limit headers they obey).
"""

import math

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import PermissionDenied, Throttled
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from healing.authentication import project_authenticate
from healing.ingest import accept, sentry
from healing.ingest.errors import IngestError
from healing.ingest.parsers import body_read
from healing.ingest.views import IngestView
from kaizen_site.api import ErrorBody


class SentryKeyAuthentication(BaseAuthentication):
    """The DSN's public key, from `X-Sentry-Auth`, `?sentry_key=` or (envelopes relayed by the
    app's own tunnel) the envelope header's `dsn`. The key must belong to the URL's project."""

    def authenticate(self, request):
        key = sentry.auth_key(headers=request.headers, query=request.query_params)
        view = request.parser_context.get("view")
        if not key and getattr(view, "key_in_body", False) and isinstance(request.data, sentry.Envelope):
            # Reading the body before the key is known: bounded by the envelope size cap.
            key = sentry.dsn_key(request.data.headers.get("dsn"))
        project = project_authenticate(key=key, origin=request.headers.get("Origin"))
        if project.project_id != request.parser_context["kwargs"].get("project_id"):
            raise PermissionDenied("This key belongs to another project.", code="wrong_project")
        return (None, project)

    def authenticate_header(self, request) -> str:
        return 'Sentry realm="ingest"'  # makes DRF answer 401, not 403, to a missing key


class SentryKeyScheme(OpenApiAuthenticationExtension):
    """Documents SentryKeyAuthentication in the OpenAPI schema."""

    target_class = SentryKeyAuthentication
    name = "SentryAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Sentry-Auth",
            "description": "`Sentry sentry_version=7, sentry_key=<the DSN's public key>` (browsers: `?sentry_key=`)",
        }


class EnvelopeParser(BaseParser):
    """Any Content-Type: SDKs send application/x-sentry-envelope, browsers text/plain (a "simple"
    request needs no CORS preflight)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        body = body_read(stream, parser_context, limit=settings.KAIZEN_MAX_ENVELOPE_BYTES)
        return sentry.envelope_parse(body, max_event_bytes=settings.KAIZEN_MAX_EVENT_BYTES)


class EventParser(BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return sentry.event_parse(body_read(stream, parser_context, limit=settings.KAIZEN_MAX_EVENT_BYTES))


class SentryAccepted(BaseModel):
    id: str | SkipJsonSchema[None] = Field(None, description="The event's id (32 hex digits); absent without an event.")


AUTH_PARAMETERS = [OpenApiParameter("sentry_key", str, description="The DSN's public key (the browser SDK's form).")]
ERRORS = {code: ErrorBody for code in (400, 401, 403, 411, 413, 415)} | {
    429: OpenApiResponse(ErrorBody, description="Over the project's quota: `Retry-After` and `X-Sentry-Rate-Limits`."),
    503: OpenApiResponse(ErrorBody, description="Nothing could store the event now: `Retry-After`."),
}


class SentryIngestView(IngestView):
    source = "sentry"
    authentication_classes = [SentryKeyAuthentication]
    key_in_body = False

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, Throttled):
            retry_after = math.ceil(exc.wait or 60)
            response["X-Sentry-Rate-Limits"] = sentry.rate_limits_header(retry_after=retry_after)
        return response

    def accept(self, request, reports: list[dict], *, fallback_id=None) -> Response:
        # Each event costs one of the project's quota; an envelope with none (sessions, client
        # reports...) costs nothing.
        accepted = accept.reports_accept(project=request.auth, reports=reports, source=self.source)
        event_id = sentry.event_id_hex(accepted[0].event_id if accepted else fallback_id)
        return Response({"id": event_id} if event_id else {})


class SentryEnvelopeView(SentryIngestView):
    parser_classes = [EnvelopeParser]
    key_in_body = True
    body_limit_setting = "KAIZEN_MAX_ENVELOPE_BYTES"

    @extend_schema(
        operation_id="sentry_envelope",
        tags=["sentry"],
        summary="Sentry envelope",
        description=(
            "The endpoint current Sentry SDKs post to: set the SDK's DSN to "
            "`https://<public key>@<this host>/<project id>`. Error events become reports; the other item types "
            "(transactions, sessions, client reports, attachments...) are accepted and dropped. Bodies may be "
            "gzip- or deflate-encoded. Each error event counts against the project's quota."
        ),
        parameters=AUTH_PARAMETERS,
        request={"application/x-sentry-envelope": OpenApiTypes.BINARY, "text/plain": OpenApiTypes.BINARY},
        responses={200: SentryAccepted, **ERRORS},
    )
    def post(self, request, project_id: int):
        if not isinstance(request.data, sentry.Envelope):
            raise IngestError("empty_envelope", "The envelope is empty.")
        reports = sentry.envelope_reports(envelope=request.data)
        return self.accept(request, reports, fallback_id=request.data.headers.get("event_id"))


class SentryStoreView(SentryIngestView):
    parser_classes = [EventParser]
    body_limit_setting = "KAIZEN_MAX_EVENT_BYTES"

    @extend_schema(
        operation_id="sentry_store",
        tags=["sentry"],
        summary="Sentry event (store)",
        description="The older SDKs' endpoint: one Sentry event as JSON, possibly gzip- or deflate-encoded.",
        parameters=AUTH_PARAMETERS,
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: SentryAccepted, **ERRORS},
    )
    def post(self, request, project_id: int):
        if not isinstance(request.data, dict) or not request.data:
            raise IngestError("invalid_event", "Send one Sentry event as a JSON object.")
        reports = sentry.store_reports(event=request.data)
        return self.accept(request, reports, fallback_id=request.data.get("event_id"))
