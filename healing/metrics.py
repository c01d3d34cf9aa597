"""Prometheus metrics for ingestion, and the healing totals read at scrape time. Served at
/metrics by kaizen_site.ops.

Under granian each web worker is a process: set PROMETHEUS_MULTIPROC_DIR (the run command does) so
counters from every process are summed at scrape time.
"""

import logging

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from healing.audit import NOT_A_PROBLEM
from healing.models import AuditEntry, IngestDeadLetter, Issue

logger = logging.getLogger("kaizen.ops")

REPORTS_RECEIVED = Counter(
    "kaizen_reports_received_total",
    "Reports answered by the ingest endpoints, by source and outcome.",
    ["source", "outcome"],
)
REPORTS_STORED = Counter(
    "kaizen_reports_ingested_total",
    "Reports written to the database, by final type, severity and outcome (new_issue, grouped, duplicate).",
    ["type", "severity", "outcome"],
)
INGEST_LATENCY = Histogram(
    "kaizen_ingest_latency_seconds",
    "Time from request to answer on the ingest endpoints.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ISSUES_ENQUEUED = Counter(
    "kaizen_issues_enqueued_total", "process_issue tasks published, by queue and outcome.", ["queue", "outcome"]
)
SENTRY_ITEMS = Counter(
    "kaizen_sentry_items_total",
    "Sentry envelope items received, by item type and outcome (report, ignored).",
    ["type", "outcome"],
)
PATTERN_LOOKUPS = Counter(
    "kaizen_pattern_lookups_total", "Pattern library look-ups by outcome (hit: a Level-0 fix, no LLM).", ["outcome"]
)
FIXES = Counter(
    "kaizen_fixes_total",
    "Automatic fixes by outcome (resolved, aborted, rolled_back) and diagnosis level (pattern, llm).",
    ["outcome", "level"],
)
INGEST_FALLBACKS = Counter(
    "kaizen_ingest_fallbacks_total",
    "Reports written straight to the database because Redis failed in stream mode.",
)


class HealingCollector(Collector):
    """Totals the database already records, read at scrape time so they are the same whichever
    process answers (registered with kaizen_site.ops by HealingConfig.ready)."""

    def collect(self):
        yield from self._false_positives()
        yield from self._dead_letters()

    def _dead_letters(self):
        dead = CounterMetricFamily(
            "kaizen_ingest_dead_letters",
            "Stream entries the consumer could not store, even alone and retried (see the console).",
        )
        try:
            dead.add_metric([], IngestDeadLetter.objects.count())
        except Exception as exc:  # noqa: BLE001 - the scrape must still answer when the database is down
            logger.warning("dead-letter count unavailable", extra={"error": str(exc)})
        yield dead

    def _false_positives(self):
        ratio = GaugeMetricFamily(
            "kaizen_false_positive_ratio", 'Share of issues the owner marked "not a problem" in the console.'
        )
        try:
            marked = AuditEntry.objects.filter(action=NOT_A_PROBLEM).values("target").distinct().count()
            total = Issue.objects.count()
            ratio.add_metric([], marked / total if total else 0.0)
        except Exception as exc:  # noqa: BLE001 - as above
            logger.warning("false-positive ratio unavailable", extra={"error": str(exc)})
        yield ratio
