"""A stream server (uvicorn, as the Procfile starts it) on the test database, and a small
Server-Sent Events reader."""

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

from tests.processes import database_url, free_port, processes_stop, procfile_start, wait_answering

BIN = Path(sys.executable).parent


@contextmanager
def stream_server(*, var_dir: Path, redis_url: str, **env_extra: str):
    """The Procfile's `stream` process on a free port; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    assert connection.settings_dict["NAME"].startswith("test_") or connection.vendor == "sqlite"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kaizen_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,  # tokens signed here are checked there
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "KAIZEN_INGEST_MODE": "auto",
        "KAIZEN_VAR_DIR": str(var_dir),
        "KAIZEN_STREAM_URL": base,
        "KAIZEN_KEY_CACHE_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
        "PGAPPNAME": f"kaizen-stream-{port}",  # its database connections, told apart from any other
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **env_extra,
    }
    log_path = var_dir / "stream.log"
    var_dir.mkdir(parents=True, exist_ok=True)
    proc = procfile_start("stream", env=env, log_path=log_path)
    try:
        # Any answer will do: without Redis or a broker its /healthz says "degraded".
        wait_answering(f"{base}/api/v1/sessions/x/events", proc=proc, log_path=log_path, accept=lambda status: True)
        yield base
    finally:
        processes_stop([proc])


class SSE:
    """One open stream, read block by block (a block ends at a blank line)."""

    def __init__(self, url: str, *, headers: dict | None = None, read_timeout: float = 8.0):
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, read_timeout))
        self.status = self.response.status_code
        self.headers = self.response.headers

    def block(self) -> list[str] | None:
        """The next block's lines; None when the server ended the stream."""
        lines = []
        while True:
            line = self.response.raw.readline()
            if not line:
                return lines or None
            text = line.decode().rstrip("\n")
            if text == "":
                if lines:
                    return lines
                continue
            lines.append(text)

    def events(self, count: int) -> list[dict]:
        """The next `count` events (comments and the retry field skipped)."""
        import json

        found = []
        while len(found) < count:
            block = self.block()
            assert block is not None, f"the stream ended after {found}"
            fields = dict(line.split(": ", 1) for line in block if not line.startswith(":") and ": " in line)
            if "data" in fields:
                found.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
        return found

    def close(self) -> None:
        self.response.close()
