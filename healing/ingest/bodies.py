"""Reading untrusted request bodies: size caps, decompression, JSON with depth and NUL checks."""

import io
import zlib
from typing import Any

import brotli
import orjson
from django.http import HttpRequest

from healing.ingest.errors import IngestError, length_required, too_large

MAX_DEPTH = 32  # real reports nest a handful of levels; deep nesting is an attack on the parser


def read_capped(stream, *, content_length: str | None, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused before it is buffered."""
    try:
        declared = int(content_length) if content_length else None
    except ValueError:
        raise IngestError("bad_request", "Content-Length is not a number.") from None
    if declared is not None and declared > limit:
        raise too_large(f"Body of {declared} bytes is over the {limit}-byte limit.")
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise too_large(f"Body is over the {limit}-byte limit.")
    return body


def chunked_body_buffer(*, request: HttpRequest, limit: int) -> None:
    """Make a chunked body (Transfer-Encoding: chunked, no Content-Length) readable, or refuse it.

    Django sizes every body by Content-Length and reads one without it as empty, so a chunked
    report would fail validation as if the client had sent nothing. A server that de-chunks the
    body and ends the input where the body ends says so with `wsgi.input_terminated` (gunicorn
    does): that input is read here, capped, and handed to Django as a body of known length.
    Without the flag there is no safe place to stop reading: 411.
    https://github.com/pallets/werkzeug/issues/1127 (where the flag comes from)
    """
    meta = request.META
    if "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower() or meta.get("CONTENT_LENGTH") not in (
        None,
        "",
        "0",
    ):
        return
    if not meta.get("wsgi.input_terminated"):
        raise length_required("Send the body with a Content-Length: this server cannot read a chunked body.")
    body = meta["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise too_large(f"Body is over the {limit}-byte limit.")
    # WSGIRequest reads its body from `_stream`, a stream it bounded by Content-Length (0 here).
    request._stream = io.BytesIO(body)
    meta["CONTENT_LENGTH"] = str(len(body))


def decompress(body: bytes, *, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br) without letting a zip bomb expand past `limit`."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "br":
        # sentry-python compresses with brotli whenever the module is importable in the app.
        try:
            return _unbrotli(body, limit)
        except brotli.error:
            raise IngestError("bad_encoding", "Body is not valid br data.") from None
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS  # zlib-wrapped, as HTTP's "deflate" means; raw deflate is tried below
    else:
        raise IngestError("unsupported_encoding", f"Content-Encoding {encoding!r} is not supported.", 415)
    try:
        return _inflate(body, wbits, limit)
    except zlib.error:
        if encoding == "deflate":
            try:
                return _inflate(body, -zlib.MAX_WBITS, limit)
            except zlib.error:
                pass
        raise IngestError("bad_encoding", f"Body is not valid {encoding} data.") from None


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise too_large(f"Decompressed body is over the {limit}-byte limit.")
    if not inflater.eof:
        raise zlib.error("truncated")
    return out


def _unbrotli(body: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out = decompressor.process(body, output_buffer_limit=limit + 1)
    if len(out) > limit or (not decompressor.is_finished() and not decompressor.can_accept_more_data()):
        raise too_large(f"Decompressed body is over the {limit}-byte limit.")
    if not decompressor.is_finished():
        raise brotli.error("truncated")
    return out


def parse_json(body: bytes) -> Any:
    if not body:
        raise IngestError("invalid_json", "Body is empty.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses invalid UTF-8 and lone surrogates here.
        raise IngestError("invalid_json", f"Body is not valid JSON: {exc}") from None
    # Skip the walk when it cannot find anything: orjson refuses raw NUL bytes (control
    # characters must be escaped), and fewer brackets than MAX_DEPTH cannot nest deeper.
    if b"\\u0000" in body or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        check_tree(data)
    return data


def check_tree(data: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` and NUL characters anywhere (PostgreSQL cannot store
    them in text or jsonb, so they would otherwise fail the write after the 2xx)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise IngestError("invalid_characters", "Strings must not contain NUL characters.")
        elif isinstance(node, dict):
            if depth > max_depth:
                raise IngestError("too_deep", f"JSON nests deeper than {max_depth} levels.")
            for key, value in node.items():
                if "\x00" in key:
                    raise IngestError("invalid_characters", "Keys must not contain NUL characters.")
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            if depth > max_depth:
                raise IngestError("too_deep", f"JSON nests deeper than {max_depth} levels.")
            stack.extend((item, depth + 1) for item in node)
