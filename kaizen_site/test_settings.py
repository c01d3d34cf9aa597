"""Settings for the test suite: the real PostgreSQL and Redis on this machine unless told otherwise.

`DATABASE_URL=` (empty) runs the suite on the SQLite default instead.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")  # a database of its own: tests flush it
os.environ.setdefault("KAIZEN_KEY_CACHE_SECONDS", "0")  # key revocation visible at once
os.environ.setdefault("KAIZEN_LOG_JSON", "0")

from kaizen_site.settings import *  # noqa: E402, F403

ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: tests that start a second process (a consumer, a worker) share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

# Never reach the real LLM from a test, whatever the developer's shell exports.
ANTHROPIC_API_KEY = ""
