"""Native ingest endpoint. Thin: parse, validate, call healing.ingest.accept, answer."""

import logging
import time

import orjson
import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, UnsupportedMediaType
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from healing import metrics
from healing.authentication import ProjectKeyAuthentication, project_authenticate
from healing.ingest import accept, bodies
from healing.ingest.errors import IngestError, Unavailable
from healing.ingest.parsers import ReportJSONParser, ReportTextParser, body_decoded
from healing.ingest.schemas import IssueAccepted, IssueReport
from kaizen_site.api import ErrorBody, JSONOnly

logger = logging.getLogger("kaizen.ingest")

OUTCOMES = {
    202: "accepted",
    200: "accepted",
    401: "unauthorized",
    403: "forbidden",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}
RETRY_AFTER_S = 5  # a database restart or fail-over takes seconds; SDKs wait at least this long


class IngestView(APIView):
    """Shared by the native and Sentry endpoints: key auth, JSON answers, metrics."""

    source = "native"
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnly
    authentication_classes = [ProjectKeyAuthentication]
    permission_classes: list = []
    throttle_classes: list = []  # the project's quota is taken with the append (healing.ingest.accept)
    body_limit_setting = "KAIZEN_MAX_BODY_BYTES"

    def initial(self, request, *args, **kwargs):
        # Before authentication: the Sentry envelope endpoint may read its key from the body.
        bodies.chunked_body_buffer(request=request._request, limit=getattr(settings, self.body_limit_setting))
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        """Whatever fails, the client gets JSON: a 503 it should retry when nothing could hold the
        report (the database, and Redis too in stream mode, are down), else a 500."""
        if isinstance(exc, OperationalError | InterfaceError | redis.RedisError):
            logger.error("report not stored: storage unreachable", extra={"error": str(exc)})
            exc = Unavailable("The report could not be stored now; send it again.", retry_after=RETRY_AFTER_S)
        elif isinstance(exc, Exception) and not isinstance(exc, APIException | Http404 | PermissionDenied):
            logger.exception("ingest failed")
            exc = IngestError("internal_error", "The report could not be processed.", 500)
        return super().handle_exception(exc)

    def dispatch(self, request, *args, **kwargs):
        started = time.perf_counter()
        response = super().dispatch(request, *args, **kwargs)
        self.observe(started=started, status_code=response.status_code)
        return response

    def observe(self, *, started: float, status_code: int) -> None:
        metrics.INGEST_LATENCY.labels(source=self.source).observe(time.perf_counter() - started)
        outcome = OUTCOMES.get(status_code, "invalid" if status_code < 500 else "error")
        metrics.REPORTS_RECEIVED.labels(source=self.source, outcome=outcome).inc()

    def refuse(self, request, exc: Exception, *args, **kwargs):
        """The answer DRF's dispatch gives when `exc` is raised in it: the same status, headers
        and `{"error", "detail"}` body, built by the same handler, for a request the fast path
        took (see IssueReportView.dispatch)."""
        self.args, self.kwargs = args, kwargs
        self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        response = self.handle_exception(exc)
        self.response = self.finalize_response(self.request, response, *args, **kwargs)
        return self.response


# The media types the parsers below read: a report sent as one of them takes the fast path.
FAST_MEDIA_TYPES = frozenset({ReportJSONParser.media_type, ReportTextParser.media_type})


class IssueReportView(IngestView):
    """The busiest endpoint. A POST of JSON (or text/plain) with a Content-Length is answered by a
    plain Django path: DRF's request wrapper, negotiation and parser selection cost about as much
    as the report itself. It runs the same checks in DRF's order (body length, key, body,
    report), and anything refused is answered by DRF's own handler, so the answers and the OpenAPI
    description (from post() below) are the same either way."""

    parser_classes = [ReportJSONParser, ReportTextParser]

    def dispatch(self, request, *args, **kwargs):
        length = request.META.get("CONTENT_LENGTH") or ""
        chunked = "HTTP_TRANSFER_ENCODING" in request.META
        if (
            request.method != "POST"
            or request.content_type not in FAST_MEDIA_TYPES
            or not (chunked or length.isdigit())
        ):
            return super().dispatch(request, *args, **kwargs)
        started = time.perf_counter()
        try:
            response = self.accept_fast(request)
        except Exception as exc:  # noqa: BLE001 - answered as DRF answers it (refuse)
            response = self.refuse(request, exc, *args, **kwargs)
        self.observe(started=started, status_code=response.status_code)
        return response

    def accept_fast(self, request) -> HttpResponse:
        meta = request.META
        bodies.chunked_body_buffer(request=request, limit=settings.KAIZEN_MAX_BODY_BYTES)
        key = meta.get("HTTP_X_KAIZEN_KEY") or request.GET.get("key", "")
        project = project_authenticate(key=key, origin=meta.get("HTTP_ORIGIN"))
        if meta.get("CONTENT_LENGTH") in (None, "", "0"):
            raise IngestError("invalid_json", "Body is empty.")
        data = bodies.parse_json(body_decoded(request, meta=meta, limit=settings.KAIZEN_MAX_BODY_BYTES))
        report = accept.report_validate(data)
        accepted = accept.reports_accept(project=project, reports=[report], source=self.source)[0]
        answer = {"event_id": accepted.event_id, "issue_id": accepted.issue_id, "stage": accepted.stage}
        return HttpResponse(
            orjson.dumps(answer),
            status=status.HTTP_202_ACCEPTED,
            content_type="application/json",
            headers=self.default_response_headers,
        )

    @extend_schema(
        operation_id="issue_report",
        summary="Report a problem",
        description=(
            "Accepts one problem report. Authenticate with the project's public key in `X-Kaizen-Key` or "
            "`?key=`. The report is durable before the 202; `issue_id` names the group it joins."
        ),
        parameters=[OpenApiParameter("key", str, description="The project's public key (browsers).")],
        request=IssueReport,
        responses={
            202: IssueAccepted,
            400: ErrorBody,
            401: ErrorBody,
            403: ErrorBody,
            411: ErrorBody,
            413: ErrorBody,
            415: ErrorBody,
            429: ErrorBody,
            503: ErrorBody,
        },
    )
    def post(self, request):
        if request.META.get("CONTENT_LENGTH") in (None, "", "0"):  # a chunked body has its length by now
            raise IngestError("invalid_json", "Body is empty.")
        if not request.content_type:
            raise UnsupportedMediaType("", detail="Send the report as application/json (or text/plain).")
        report = accept.report_validate(request.data)
        accepted = accept.reports_accept(project=request.auth, reports=[report], source=self.source)[0]
        return Response(
            {"event_id": accepted.event_id, "issue_id": accepted.issue_id, "stage": accepted.stage},
            status=status.HTTP_202_ACCEPTED,
        )
