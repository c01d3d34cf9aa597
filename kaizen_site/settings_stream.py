"""The per-session event stream to the users' popups (healing.stream), served by the ASGI process."""

import os

from kaizen_site import runtime

# The origin browsers open the event stream at. The default is the public URL's host with the next
# port (`make run` starts the ASGI server there); set it equal to KAIZEN_PUBLIC_URL when a proxy
# routes /api/v1/sessions/*/events to the ASGI server on the same origin (production).
KAIZEN_STREAM_URL = runtime.stream_url(
    os.environ.get("KAIZEN_STREAM_URL", ""), public=runtime.public_url(os.environ.get("KAIZEN_PUBLIC_URL", ""))
)
# How long a stream token is good for; a page refreshes it (POST .../token) before it runs out.
# A token expired for less than KAIZEN_SESSION_REFRESH_GRACE_SECONDS can still be refreshed.
KAIZEN_SESSION_TOKEN_SECONDS = int(os.environ.get("KAIZEN_SESSION_TOKEN_SECONDS", "900"))
KAIZEN_SESSION_REFRESH_GRACE_SECONDS = int(os.environ.get("KAIZEN_SESSION_REFRESH_GRACE_SECONDS", str(24 * 3600)))
# A comment line this often keeps proxies and load balancers from closing an idle stream.
KAIZEN_STREAM_HEARTBEAT_SECONDS = float(os.environ.get("KAIZEN_STREAM_HEARTBEAT_SECONDS", "15"))
# A stream ends itself after this long; the browser reconnects (with Last-Event-ID and, by then,
# a fresh token), so a revoked session or an old token never keeps a stream open for long.
KAIZEN_STREAM_MAX_SECONDS = float(os.environ.get("KAIZEN_STREAM_MAX_SECONDS", "300"))
# The browser's reconnection delay, sent first as the stream's `retry:` field.
KAIZEN_STREAM_RETRY_MS = int(os.environ.get("KAIZEN_STREAM_RETRY_MS", "2000"))
# Without Redis (the embedded default) each stream reads the database this often.
KAIZEN_STREAM_POLL_SECONDS = float(os.environ.get("KAIZEN_STREAM_POLL_SECONDS", "1"))
# Threads (each with one database connection) a stream process reads the database on, for all its streams.
KAIZEN_STREAM_DB_THREADS = int(os.environ.get("KAIZEN_STREAM_DB_THREADS", "4"))
# With Redis, a stream still reads the database this often, in case a wake-up was lost.
KAIZEN_STREAM_RESYNC_SECONDS = float(os.environ.get("KAIZEN_STREAM_RESYNC_SECONDS", "60"))
# A flapping issue must not flood a user: per session and minute, at most this many progress
# statuses, and at most KAIZEN_STREAM_HARD_CAP statuses of any kind (fixed, needs input, ...).
KAIZEN_STREAM_STATUSES_PER_MINUTE = int(os.environ.get("KAIZEN_STREAM_STATUSES_PER_MINUTE", "6"))
KAIZEN_STREAM_HARD_CAP = int(os.environ.get("KAIZEN_STREAM_HARD_CAP", "12"))
# A session hears about an issue it reported within this window.
KAIZEN_STREAM_SESSION_WINDOW_SECONDS = int(os.environ.get("KAIZEN_STREAM_SESSION_WINDOW_SECONDS", str(24 * 3600)))
# The size cap of one uploaded session recording (rrweb events, as JSON); 413 above.
KAIZEN_MAX_RECORDING_BYTES = int(os.environ.get("KAIZEN_MAX_RECORDING_BYTES", str(5 * 1024 * 1024)))
