"""The floor bench/ingest.py measures its latency against: the least any Python report endpoint
does, on the same WSGI server under the same load. It reads the body, parses it and appends it to
a Redis stream in one round trip, then answers 202; no Django, no validation, no consumer behind
it. Whatever p99 this reaches at 32 connections is the share of the tail that the machine and the
server take before Kaizen runs a line."""

import os

import orjson
import redis

ANSWER = orjson.dumps({"status": "detected"})
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]

# Both set by bench/ingest.py, which deletes the stream after the run.
_redis = redis.Redis.from_url(os.environ["REDIS_URL"])
STREAM = os.environ["FLOOR_STREAM"]


def application(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":  # the bench's readiness check
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    _redis.xadd(STREAM, {"report": orjson.dumps(orjson.loads(body))}, maxlen=100_000, approximate=True)
    start_response("202 Accepted", HEADERS)
    return [ANSWER]
