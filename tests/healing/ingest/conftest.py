"""The ingest tests' shared fixtures (defined with their helpers in the folder's support module)."""

from tests.healing.ingest.sentry_support import frozen_clock, send  # noqa: F401 - fixtures of this folder
