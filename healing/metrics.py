"""Prometheus metrics for ingestion. Served at /metrics by kaizen_site.ops.

Under gunicorn each worker is a process: set PROMETHEUS_MULTIPROC_DIR (the run command does) so
counters from every process are summed at scrape time.
"""

from prometheus_client import Counter, Histogram

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
