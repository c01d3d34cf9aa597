"""Ingest errors: each one is a 4xx with a machine-readable code (see kaizen_site.api)."""

from rest_framework import status
from rest_framework.exceptions import APIException


class IngestError(APIException):
    def __init__(self, code: str, detail: str, status_code: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code


def too_large(detail: str) -> IngestError:
    return IngestError("too_large", detail, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
