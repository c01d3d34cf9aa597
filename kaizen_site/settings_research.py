"""Daily research (research/): fetching politeness, backoff, scoring. Read once, here."""

import os

# Seconds per HTTP request (connect, read). A source slower than this fails as transient and the
# others are not held up: each source is its own task.
KAIZEN_RESEARCH_TIMEOUT = (
    float(os.environ.get("KAIZEN_RESEARCH_CONNECT_TIMEOUT", "5")),
    float(os.environ.get("KAIZEN_RESEARCH_READ_TIMEOUT", "10")),
)
KAIZEN_RESEARCH_MAX_BYTES = int(os.environ.get("KAIZEN_RESEARCH_MAX_BYTES", str(5 * 1024 * 1024)))
# Sources fetched at once by `manage.py research run` (Celery workers bound it on the schedule).
KAIZEN_RESEARCH_CONCURRENCY = int(os.environ.get("KAIZEN_RESEARCH_CONCURRENCY", "8"))
# Backoff after a failure: base × 2^(n-1) seconds, capped; disabled (owner told) after N in a row.
KAIZEN_RESEARCH_BACKOFF_SECONDS = int(os.environ.get("KAIZEN_RESEARCH_BACKOFF_SECONDS", "900"))
KAIZEN_RESEARCH_BACKOFF_MAX_SECONDS = int(os.environ.get("KAIZEN_RESEARCH_BACKOFF_MAX_SECONDS", str(24 * 3600)))
KAIZEN_RESEARCH_MAX_ERRORS = int(os.environ.get("KAIZEN_RESEARCH_MAX_ERRORS", "5"))
# Candidates analysed per day (each one is an LLM call when a key is set).
KAIZEN_RESEARCH_MAX_CANDIDATES = int(os.environ.get("KAIZEN_RESEARCH_MAX_CANDIDATES", "40"))
# Reddit (praw, read-only): https://www.reddit.com/prefs/apps. Without them Reddit sources are off.
REDDIT_CLIENT_ID = os.environ.get("REDDIT_CLIENT_ID", "")
REDDIT_CLIENT_SECRET = os.environ.get("REDDIT_CLIENT_SECRET", "")
