"""DRF parsers for report bodies: capped, decompressed, strictly parsed."""

from django.conf import settings
from rest_framework.parsers import BaseParser

from healing.ingest.bodies import decompress, parse_json, read_capped


def body_read(stream, parser_context, *, limit: int) -> bytes:
    return body_decoded(stream, meta=parser_context["request"].META, limit=limit)


def body_decoded(stream, *, meta: dict, limit: int) -> bytes:
    """The body read from `stream` (capped at `limit`), its Content-Encoding undone."""
    raw = read_capped(stream, content_length=meta.get("CONTENT_LENGTH"), limit=limit)
    return decompress(raw, encoding=meta.get("HTTP_CONTENT_ENCODING", ""), limit=limit)


class ReportJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json(body_read(stream, parser_context, limit=settings.KAIZEN_MAX_BODY_BYTES))


class ReportTextParser(ReportJSONParser):
    """Browsers post JSON as text/plain: a "simple" request needs no CORS preflight."""

    media_type = "text/plain"
