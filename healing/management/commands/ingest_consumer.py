"""Drain the Redis ingest stream into the database (run one or more of these beside the web).

It never exits on a Redis or database failure (healing.ingest.consumer waits them out): under honcho one
process that exits stops them all."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from healing.ingest import consumer


class Command(BaseCommand):
    help = "Consume the ingest stream: store reports in batches, group them and enqueue their work."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=settings.KAIZEN_INGEST_BATCH, help="Entries per batch.")
        parser.add_argument("--until-empty", action="store_true", help="Stop once the stream is drained.")
        parser.add_argument("--name", help="Consumer name (default: host-pid).")

    def handle(self, *args, batch: int, until_empty: bool, name: str | None, **options):
        stop = threading.Event()
        if settings.KAIZEN_INGEST_MODE != "stream":
            # Honcho stops every process when one exits, so the embedded run keeps this one idle.
            self.stdout.write("Ingest writes directly to the database (no Redis); there is no stream to consume.")
            if until_empty:
                return
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"Consuming {settings.KAIZEN_INGEST_STREAM} in batches of {batch}.")
        stats = consumer.drain(stop=stop, consumer=name, batch=batch, until_empty=until_empty)
        self.stdout.write(
            f"Stopped: {stats.stored} stored, {stats.duplicates} duplicates, {stats.claimed} re-claimed, "
            f"{stats.dead} dead-lettered in {stats.batches} batches; {stats.redis_errors} Redis errors waited out."
        )
