"""The Celery app. Its configuration is the CELERY_* block in kaizen_site.settings.

Work is published here, by task name, never by importing a `tasks.py`: the modules that send work
then depend on the task's name only, not on the module (and everything it imports) that runs it.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from celery.app.defaults import DEFAULTS as CELERY_DEFAULTS
from celery.signals import celeryd_after_setup, setup_logging
from kombu.exceptions import KombuError, OperationalError

from kaizen_site.worker_priority import worker_started

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")

app = Celery("kaizen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _settings_resolved(sender=None, source=None, **_) -> None:
    """Every setting Celery knows, resolved once into the first place it looks. Read through
    Django's settings, a setting left at Celery's default is looked for under two names in three
    places, each miss an exception; publishing a task reads three such settings, which came to a
    third of its CPU (the ingest consumer publishes one task per new issue)."""
    source.update({key: source[key] for key in CELERY_DEFAULTS})


@setup_logging.connect
def _logging_ours(loglevel=None, **_) -> None:
    """Workers and beat log as the web processes do (kaizen_site.logs: structured, JSON in
    production, every record's fields kept), at the level `--loglevel` asks for. Celery leaves
    logging to a receiver of this signal; without one it replaces the root logger's handlers with
    a plain format that drops the fields."""
    import logging

    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)  # as django.setup() does
    if loglevel:
        logging.getLogger().setLevel(loglevel)


def broker_errors() -> tuple[type[BaseException], ...]:
    """What publishing raises when the broker is unreachable: each transport raises its own
    client's errors (redis-py's, amqp's...), which kombu lists on the connection."""
    connection = app.connection_for_write()
    return (OperationalError, KombuError, OSError, *connection.connection_errors, *connection.channel_errors)


def worker_group(hostname: str) -> str:
    """The Procfile group a worker belongs to, from its node name: <group>@<host>, or
    <group>.<pid>@<host> for a group that runs several processes on one host (critical)."""
    return hostname.partition("@")[0].partition(".")[0]


def task_publish(
    name: str,
    *,
    args: Sequence[Any],
    queue: str,
    kwargs: Mapping[str, Any] | None = None,
    countdown: float | None = None,
    producer: Any = None,
    declare: bool = True,
) -> str:
    """Send the task `name` on `queue`; returns the message's task id. Broker errors are the
    caller's to handle (see `broker_errors`): whether a lost message matters depends on what sent it.

    With a `producer` (a batch of publishes, flushed together), each message is published once,
    without kombu's retry wrapper: the batch's flush is what reaches the broker, and a failed
    flush fails the whole batch to the caller. `declare=False` skips declaring the queue, for the
    messages after the first one a batch sends to it (declaring costs as much as the message)."""
    options: dict[str, Any] = {"countdown": countdown} if countdown is not None else {}
    if producer is not None:
        # Celery's own repr of the arguments (saferepr, for logs and monitors) is the costliest
        # part of building a small message; a batch sends small ones (ids).
        options.update(producer=producer, retry=False, argsrepr=repr(list(args)), kwargsrepr=repr(dict(kwargs or {})))
    if not declare:
        options["declare"] = []
    sent = app.send_task(name, args=list(args), kwargs=dict(kwargs or {}), queue=queue, **options)
    return sent.id


@celeryd_after_setup.connect
def _worker_priority(sender=None, instance=None, **_) -> None:
    # After --queues is applied, before the pool forks: see kaizen_site.worker_priority.
    worker_started(queues=instance.app.amqp.queues.consume_from)
