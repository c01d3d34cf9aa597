"""The ingest tests' shared fixtures (defined with their helpers in the folder's support modules)."""

from tests.healing.ingest.sentry_support import frozen_clock, send  # noqa: F401 - fixtures of this folder
from tests.healing.ingest.served import served  # noqa: F401 - the Procfile's web server
