"""The per-session event stream to the users' popups: sessions and their tokens, the fan-out of
issue stages to the sessions that met the issue, and the Server-Sent Events served by the ASGI
process (woken through Redis pub/sub, or polling the database on the embedded default)."""
