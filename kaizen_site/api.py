"""One place where API errors become HTTP: `{"error": "<code>", "detail": ...}`, and a log line."""

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import BaseModel
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("kaizen.api")

CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.Throttled: "rate_limited",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "invalid_json",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotFound: "not_found",
}


class JSONOnly(BaseContentNegotiation):
    """Answer JSON whatever the client's Accept says (the API renders nothing else): the busy
    endpoints (reports, flags) skip negotiating it on every request."""

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ErrorBody(BaseModel):
    """The body of every refused API request, as documented in the OpenAPI schema."""

    error: str
    detail: Any = None


def _code(exc: exceptions.APIException) -> str:
    if getattr(exc, "error_code", None):
        return exc.error_code
    for cls, code in CODES.items():
        if isinstance(exc, cls):
            return code
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return "invalid"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        # A model's clean() refusing a value is the client's error, not a 500.
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _code(exc)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(exc, exceptions.Throttled):
        detail = f"Over the project's quota; retry in {exc.wait:.0f} s."
    response.data = {"error": code, "detail": detail}
    request = context.get("request")
    logger.warning(
        "api request refused",
        extra={
            "status": response.status_code,
            "error": code,
            "path": request.path if request is not None else "",
            "remote": request.META.get("REMOTE_ADDR") if request is not None else "",
        },
    )
    return response
