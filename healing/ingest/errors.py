"""Ingest errors: each one is a 4xx (or a 503) with a machine-readable code (see kaizen_site.api)."""

from rest_framework import status
from rest_framework.exceptions import APIException


class IngestError(APIException):
    def __init__(self, code: str, detail: str, status_code: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code


class Unavailable(IngestError):
    """Nothing could make the report durable: the client keeps it and sends it again. DRF turns
    `wait` into the Retry-After header."""

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__("unavailable", detail, status.HTTP_503_SERVICE_UNAVAILABLE)
        self.wait = retry_after


def too_large(detail: str) -> IngestError:
    return IngestError("too_large", detail, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def length_required(detail: str) -> IngestError:
    return IngestError("length_required", detail, status.HTTP_411_LENGTH_REQUIRED)
