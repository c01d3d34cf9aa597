"""gunicorn settings for the API (https://docs.gunicorn.org/en/stable/settings.html).

Ingest requests are short and CPU-bound, so a few sync-style threads per worker process are
enough; long-lived streams belong on the ASGI server, not here.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")  # gthread keeps client connections alive
threads = int(os.environ.get("WEB_THREADS", "2"))
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # off by default: one line per report is a lot
preload_app = True


def child_exit(server, worker):
    # Prometheus multiprocess mode: forget the dead worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
