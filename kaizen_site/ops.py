"""Operations endpoints: /healthz for load balancers, /metrics for Prometheus."""

import hmac
import logging
import os
import time

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from kombu.exceptions import ChannelError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from kaizen_site import redis_client
from kaizen_site.celery import app
from kaizen_site.models import LLMCall
from kaizen_site.security.network import client_ip, ip_allowed

logger = logging.getLogger("kaizen.ops")


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **(detail or {})}
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _check_db() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def _check_broker() -> dict:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return {"transport": conn.transport.driver_name}


def _check_redis() -> dict:
    client = redis_client.get().client
    client.ping()
    return {"ingest_backlog": client.xlen(settings.KAIZEN_INGEST_STREAM), "persistence": _redis_persistence(client)}


def _redis_persistence(client) -> str:
    """Reports in the ingest stream survive a Redis restart only with AOF on (see the README)."""
    try:
        aof = client.config_get("appendonly").get("appendonly")
    except Exception:  # noqa: BLE001 - managed Redis often refuses CONFIG; not a health failure
        return "unknown"
    return "aof" if aof == "yes" else "none: reports not yet stored are lost if Redis restarts"


def health_checks() -> dict[str, dict]:
    """Database, broker and (when configured) Redis, each timed: /healthz and the console's dashboard."""
    checks = {"database": _timed(_check_db), "broker": _timed(_check_broker)}
    if settings.REDIS_URL:
        checks["redis"] = _timed(_check_redis)
    return checks


@require_GET
def healthz(request):
    checks = health_checks()
    healthy = all(c["ok"] for c in checks.values())
    if not healthy:
        logger.warning("health check degraded", extra={"checks": checks})
    body = {"status": "ok" if healthy else "degraded", "ingest_mode": settings.KAIZEN_INGEST_MODE, "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)


def queue_depths() -> dict[str, int]:
    """Messages waiting in each Celery queue, asked of the broker itself."""
    depths = {}
    with app.pool.acquire(block=True, timeout=5) as conn:
        for queue in app.conf.task_queues:
            try:
                depths[queue.name] = _queue_size(conn, queue.name)
            except ChannelError:
                depths[queue.name] = 0  # never declared (or, on Redis, empty): nothing waits in it
    return depths


def _queue_size(conn, name: str) -> int:
    # AMQP closes a channel that asked about an undeclared queue, so it gets a fresh one each. Other
    # transports (Redis) keep the pooled connection's channel open, and opening one costs tens of
    # milliseconds: the dashboard asks for every queue on each render.
    if conn.transport.driver_type == "amqp":
        with conn.channel() as channel:
            return channel.queue_declare(queue=name, passive=True).message_count
    return conn.default_channel.queue_declare(queue=name, passive=True).message_count


class BrokerCollector(Collector):
    """Read at scrape time, so the numbers are the broker's, not a process's memory."""

    def collect(self):
        depth = GaugeMetricFamily("kaizen_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"])
        try:
            for name, count in queue_depths().items():
                depth.add_metric([name], count)
        except Exception as exc:  # noqa: BLE001 - the scrape must still answer when the broker is down
            logger.warning("queue depth unavailable", extra={"error": str(exc)})
        yield depth
        if settings.REDIS_URL:
            backlog = GaugeMetricFamily("kaizen_ingest_backlog", "Reports in the ingest stream not yet stored.")
            try:
                backlog.add_metric([], redis_client.get().client.xlen(settings.KAIZEN_INGEST_STREAM))
            except Exception as exc:  # noqa: BLE001 - as above
                logger.warning("ingest backlog unavailable", extra={"error": str(exc)})
            yield backlog


class LedgerCollector(Collector):
    """Totals the database already records (every LLM call is a row): read at scrape time, so
    they are the same whichever process answers and survive restarts."""

    def collect(self):
        calls = CounterMetricFamily("kaizen_llm_calls", "LLM calls, by purpose and whether the answer was valid.",
                                    labels=["purpose", "valid"])  # fmt: skip
        tokens = CounterMetricFamily("kaizen_llm_tokens", "LLM tokens, by direction.", labels=["direction"])
        cost = CounterMetricFamily("kaizen_llm_cost_usd", "Estimated LLM spend in US dollars.")
        try:
            rows = LLMCall.objects.values("purpose", "valid").annotate(
                n=Count("id"), tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost_usd")
            )
            totals = {"in": 0, "out": 0, "cost": 0.0}
            for row in rows:
                calls.add_metric([row["purpose"], str(row["valid"]).lower()], row["n"])
                totals["in"] += row["tokens_in"] or 0
                totals["out"] += row["tokens_out"] or 0
                totals["cost"] += float(row["cost"] or 0)
            tokens.add_metric(["in"], totals["in"])
            tokens.add_metric(["out"], totals["out"])
            cost.add_metric([], totals["cost"])
        except Exception as exc:  # noqa: BLE001 - the scrape must still answer when the database is down
            logger.warning("LLM totals unavailable", extra={"error": str(exc)})
        yield from (calls, tokens, cost)


def metrics_allowed(request) -> bool:
    """The scraper's bearer token (Prometheus' `authorization` scrape setting) or its address in the
    allowlist, whichever is configured; with neither, open only with DEBUG on (a system check says
    which it is)."""
    token, cidrs = settings.KAIZEN_METRICS_TOKEN, settings.KAIZEN_METRICS_IP_ALLOWLIST
    if not token and not cidrs:
        return settings.DEBUG
    if token:
        scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return True
    return bool(cidrs) and ip_allowed(ip=client_ip(request), cidrs=cidrs)


@require_GET
def metrics(request):
    if not metrics_allowed(request):
        logger.warning("metrics scrape refused", extra={"ip": client_ip(request)})
        response = JsonResponse(
            {"error": "forbidden", "detail": "Send the metrics token as `Authorization: Bearer <token>`."}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry) + generate_latest(_scrape_time_registry)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)


_scrape_time_registry = CollectorRegistry()
_scrape_time_registry.register(BrokerCollector())
_scrape_time_registry.register(LedgerCollector())


def scrape_time_register(collector: Collector) -> None:
    """An app's own totals read at scrape time (its AppConfig.ready registers them): the site
    serves them without importing the app."""
    _scrape_time_registry.register(collector)
