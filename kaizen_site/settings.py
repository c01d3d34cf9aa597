"""Kaizen settings: everything comes from the environment (12-factor).

Every variable is listed with its default in `.env.example`; the embedded default needs none.
"""

import os
from pathlib import Path

import dj_database_url
from kombu import Queue

from kaizen_site import logs, runtime, sandbox_secret
from kaizen_site.settings_notifications import *  # noqa: F403 - owner notifications (channels, routing, digest)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("KAIZEN_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key"  # noqa: S105 - only ever used with DEBUG on
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "kaizen_site.apps.OwnerAdminConfig",  # the stock admin, as the owner-only, two-factor console
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: /api/docs/ works offline
    "corsheaders",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",  # the console's second factor: TOTP, an authenticator app's codes
    "axes",  # login throttling and lock-out
    "healing",
    "flags",
    "notifications",
    "research",
    "kaizen_site",  # the LLM call log
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the session passed 2FA
    # The console's door: the IP allowlist, the recorded admin session (revoked → logged out), the
    # client address the audit log records.
    "kaizen_site.security.middleware.ConsoleGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: answers a locked-out login
]

ROOT_URLCONF = "kaizen_site.urls"
WSGI_APPLICATION = "kaizen_site.wsgi.application"
ASGI_APPLICATION = "kaizen_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's overrides of admin templates (the console's index and base): found before
        # django.contrib.admin's own, which an app's templates/ folder would not be.
        "DIRS": [BASE_DIR / "kaizen_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/databases/
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'kaizen.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock up front so two
    # writers queue on `timeout` instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The dashboard's covering indexes (INCLUDE) are a PostgreSQL read optimisation; SQLite builds
    # them on the key columns alone, which is all the embedded default needs.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
# A process serving many threads at once (the web server, the threaded P0 worker) borrows its
# connections from a bounded pool instead of keeping one per thread: 150 concurrent requests would
# otherwise open 150 connections and lock every other process out of PostgreSQL (its default
# max_connections is 100). The Procfile sets DATABASE_POOL_SIZE on those lines; a thread that finds
# the pool empty waits up to DATABASE_POOL_TIMEOUT seconds, then gets a database error.
DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE") or 0)
if DATABASE_POOL_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT", "10")),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Runtime: Redis or the embedded defaults ------------------------------------------------
RUNTIME = runtime.from_environment()
REDIS_URL = RUNTIME.redis_url

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Files, not process memory: the web server's workers and the Celery workers must share it.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Auth, i18n, static ---------------------------------------------------------------------
# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
(VAR_DIR / "static").mkdir(exist_ok=True)  # whitenoise warns at start-up if it is missing
# Browser libraries installed from the npm registry (package.json, `make` runs `npm ci`), served
# from here under static/kaizen/vendor/<package>/. Where npm has not installed them, the features
# that need them say so (session recording is off, the console shows no player).
NODE_MODULES = BASE_DIR / "node_modules"
BROWSER_PACKAGES = ("rrweb", "rrweb-player", "@pusher/push-notifications-web")
STATICFILES_DIRS = [
    (f"kaizen/vendor/{name.rpartition('/')[2]}", NODE_MODULES / name / "dist")
    for name in BROWSER_PACKAGES
    if (NODE_MODULES / name / "dist").is_dir()
]
# The packages ship their browser builds as .cjs, which Python's mimetypes does not know: served as
# octet-stream, a browser (X-Content-Type-Options: nosniff) would refuse to run them.
WHITENOISE_MIMETYPES = {".cjs": "text/javascript; charset=utf-8"}

# The one-time secret shown after creating a key must not ride in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    # The owner's console session: an address in KAIZEN_OWNER_EMAILS, past 2FA, from an allowed IP.
    "DEFAULT_PERMISSION_CLASSES": ["kaizen_site.security.permissions.IsConsoleOwner"],
    "EXCEPTION_HANDLER": "kaizen_site.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kaizen API",
    "DESCRIPTION": "Problem-report ingestion (native and Sentry protocol) for the Kaizen self-healing backend.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # 3.1: the pydantic request models use JSON Schema's `null` type, which 3.0 cannot express.
    "OAS_VERSION": "3.1.0",
    # Swagger UI from the pinned drf-spectacular-sidecar package, not a CDN's @latest.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# CORS is decided per project (its allowed origins) by healing.ingest.cors; nothing is open globally.
CORS_ALLOWED_ORIGINS: list[str] = []
# The event stream answers CORS itself (healing.stream.sse), from the project its token names: the
# ASGI process must not run the hook's database read on its event loop.
CORS_URLS_REGEX = r"^/api/(?!v1/sessions/[^/]+/events$).*$"
CORS_ALLOW_HEADERS = ["content-type", "x-kaizen-key", "x-sentry-auth", "sentry-trace", "baggage", "if-none-match"]
CORS_EXPOSE_HEADERS = ["retry-after", "x-sentry-rate-limits", "etag"]

# --- Celery ---------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = RUNTIME.broker_url
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: the embedded broker, one folder of message files.
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # The exchange tables too: kombu's default is ./control, a folder in whatever the working directory is.
        "control_folder": str(_broker_dir / "control"),
    }
else:
    # Redis redelivers an unacked message after visibility_timeout; it must exceed the longest
    # task run and the longest ETA a task is scheduled with, or the task runs twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must fail fast when the broker is down: the outbox (Issue.enqueue_state) retries later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged after it ran, so a crash redelivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...including when the worker process is killed
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a worker holds one task at a time: no P0 stuck behind a prefetched P3
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Severity queues carry the healing work; the others keep slow jobs off them.
SEVERITY_QUEUES = ("P0", "P1", "P2", "P3")
CELERY_TASK_QUEUES = [Queue(name) for name in (*SEVERITY_QUEUES, "notify", "research", "ops")]
CELERY_TASK_DEFAULT_QUEUE = "ops"
CELERY_TASK_ROUTES = {
    "notifications.*": {"queue": "notify"},
    "research.*": {"queue": "research"},
    # The daily batch heals many minor issues in one run: on the P3 queue, never on the urgent workers.
    "healing.tasks.process_p3_batch": {"queue": "P3"},
}
# Worker groups: a P0 never waits behind lesser work (a storm of P1 issues and their alerts), and
# `urgent` never shares a process with a P2/P3 flood. `routine` yields the CPU (worker_priority).
CELERY_WORKER_GROUPS = {"critical": "P0", "urgent": "P1,notify,ops", "routine": "P2,P3,research"}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# All periodic work, declared in one place; beat copies it into the admin-editable schedule.
CELERY_BEAT_SCHEDULE = {
    "reenqueue-pending-issues": {"task": "healing.tasks.reenqueue_pending", "schedule": 30.0},
    "trim-occurrences": {"task": "healing.tasks.trim_occurrences", "schedule": 3600.0},
    # Minor (P3) issues are healed together once a day rather than one by one.
    "p3-daily-batch": {"task": "healing.tasks.process_p3_batch", "schedule": 24 * 3600.0},
    # Rollout phases end by ETA task; this ends any whose task was lost and watches every phase.
    "sweep-rollouts": {"task": "flags.tasks.rollouts_sweep", "schedule": 30.0, "options": {"queue": "ops"}},
    # Resumes (or escalates) issues whose stage outlived its deadline: a worker died mid-stage.
    "sweep-stage-deadlines": {
        "task": "healing.tasks.sweep_stage_deadlines",
        "schedule": 60.0,
        "options": {"queue": "ops"},
    },
    # Starts the Changes the owner scheduled for later (Quick Fix) once their time has come.
    "start-scheduled-changes": {
        "task": "healing.tasks.start_scheduled_changes",
        "schedule": 60.0,
        "options": {"queue": "ops"},
    },
}
CELERY_BEAT_SCHEDULE.update(notification_beat_schedule())  # noqa: F405

# --- Kaizen ---------------------------------------------------------------------------------
KAIZEN_OWNER_EMAILS = env_list("KAIZEN_OWNER_EMAILS")
KAIZEN_OWNER_TIMEZONE = os.environ.get("KAIZEN_OWNER_TIMEZONE", "UTC")
KAIZEN_INGEST_MODE = RUNTIME.ingest_mode
KAIZEN_INGEST_STREAM = os.environ.get("KAIZEN_INGEST_STREAM", "kaizen:ingest")
KAIZEN_INGEST_BATCH = int(os.environ.get("KAIZEN_INGEST_BATCH", "500"))
# Native reports: 1 MiB per body. Sentry: an event item up to 1 MiB, a whole envelope up to 20 MiB
# once decompressed (attachments are accepted but not stored).
KAIZEN_MAX_BODY_BYTES = int(os.environ.get("KAIZEN_MAX_BODY_BYTES", str(1024 * 1024)))
KAIZEN_MAX_EVENT_BYTES = int(os.environ.get("KAIZEN_MAX_EVENT_BYTES", str(1024 * 1024)))
KAIZEN_MAX_ENVELOPE_BYTES = int(os.environ.get("KAIZEN_MAX_ENVELOPE_BYTES", str(20 * 1024 * 1024)))
# How long a process trusts its cached key → project look-up; a revoked key stops working after this.
KAIZEN_KEY_CACHE_SECONDS = float(os.environ.get("KAIZEN_KEY_CACHE_SECONDS", "5"))
KAIZEN_OCCURRENCES_PER_ISSUE = int(os.environ.get("KAIZEN_OCCURRENCES_PER_ISSUE", "1000"))
# The one address this service is reached at: what `make run` and `kaizen_demo` print, the port
# `make run` serves on, the demo project's allowed browser origins, and where verification replays
# unless KAIZEN_SANDBOX_URL says otherwise. Not derived from PORT: honcho hands each process a
# PORT of its own (5000, 5100, ...), so every process would disagree.
KAIZEN_PUBLIC_URL = runtime.public_url(os.environ.get("KAIZEN_PUBLIC_URL", ""))
# The demo product at /demo/ (three real bugs for the healing loop), and where verification replays
# failing requests: the sandbox deployment of the owner's product (the demo, locally).
KAIZEN_DEMO = env_bool("KAIZEN_DEMO")
KAIZEN_DEMO_HOOK_SECRET = os.environ.get("KAIZEN_DEMO_HOOK_SECRET", "")
KAIZEN_SANDBOX_URL = (os.environ.get("KAIZEN_SANDBOX_URL") or KAIZEN_PUBLIC_URL).rstrip("/")
# What the remediation actions may touch: cache key prefixes `cache_clear` may delete, and
# the owner's idempotent Celery tasks `celery_task_retry` may re-send ({"task.name": ["queue", ...]}).
KAIZEN_REMEDIATION_CACHE_PREFIXES = env_list("KAIZEN_REMEDIATION_CACHE_PREFIXES")
KAIZEN_REMEDIATION_TASKS: dict[str, list[str]] = {}
# Rollout phase lengths for the healing loop's fixes (canary = the affected user, partial = 10 %).
KAIZEN_ROLLOUT_CANARY_SECONDS = int(os.environ.get("KAIZEN_ROLLOUT_CANARY_SECONDS", "300"))
KAIZEN_ROLLOUT_PARTIAL_SECONDS = int(os.environ.get("KAIZEN_ROLLOUT_PARTIAL_SECONDS", "1800"))
KAIZEN_ROLLOUT_FULL_SECONDS = int(os.environ.get("KAIZEN_ROLLOUT_FULL_SECONDS", "1800"))
# How long each stage of the healing loop may take (seconds) before the deadline sweep resumes its
# work (healing.loop.sweep); a stage missing here has no deadline. The stages a worker runs must allow
# more than CELERY_TASK_TIME_LIMIT, so a resumed stage never runs beside a live one. `deployed`
# covers the whole rollout; `needs_input` is how long the user has to answer.
KAIZEN_STAGE_DEADLINES = {
    stage: int(os.environ.get(f"KAIZEN_DEADLINE_{stage.upper()}_SECONDS", default))
    for stage, default in {
        "detected": "900", "diagnosing": "900", "root_cause_found": "900", "fixing": "900", "verifying": "900",
        "deployed": str(2 * 24 * 3600), "needs_input": str(3 * 24 * 3600),
    }.items()
}  # fmt: skip
# Times a stage is resumed after its deadline before the issue is escalated with the reason.
KAIZEN_STAGE_RESUMES = int(os.environ.get("KAIZEN_STAGE_RESUMES", "2"))
# The sandbox honours signed X-Kaizen-Probe headers that force a flag on for one user (flags.probes).
KAIZEN_SANDBOX_MODE = env_bool("KAIZEN_SANDBOX_MODE")
# Unset, a local sandbox (`make run`) makes its own random secret under var/ (kaizen_site.sandbox_secret).
KAIZEN_SANDBOX_SECRET = (
    sandbox_secret.sandbox_secret(configured=os.environ.get("KAIZEN_SANDBOX_SECRET", ""), var_dir=VAR_DIR)
    if KAIZEN_SANDBOX_MODE
    else os.environ.get("KAIZEN_SANDBOX_SECRET", "")
)
# Where a Change's code patch is sent to be built (Kaizen never applies one itself), and the
# HMAC-SHA256 secret the request is signed with. No URL: patches wait for the owner's approval.
KAIZEN_PATCH_EXECUTOR_URL = os.environ.get("KAIZEN_PATCH_EXECUTOR_URL", "")
KAIZEN_PATCH_EXECUTOR_SECRET = os.environ.get("KAIZEN_PATCH_EXECUTOR_SECRET", "")
# LLM diagnosis (kaizen_site.llm). Without a key it is off and issues go to the pattern library,
# then to the owner. Model ids and prices: https://platform.claude.com/docs/en/about-claude/models/overview
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
KAIZEN_LLM_MODEL = os.environ.get("KAIZEN_LLM_MODEL", "claude-sonnet-5-5")
KAIZEN_LLM_TIMEOUT = float(os.environ.get("KAIZEN_LLM_TIMEOUT", "60"))  # seconds, per HTTP attempt
# The SDK sleeps for as long as a retry-after header asks: keep its own retries low and let the
# Celery task retry later instead of holding a worker.
KAIZEN_LLM_MAX_RETRIES = int(os.environ.get("KAIZEN_LLM_MAX_RETRIES", "1"))

LOGGING = logs.configure(json=env_bool("KAIZEN_LOG_JSON", not DEBUG), level=os.environ.get("LOG_LEVEL", "INFO"))

from .settings_research import *  # noqa: E402, F403  (daily research: research/)
from .settings_security import *  # noqa: E402, F403  (the console's door: 2FA, lock-out, sessions, HTTPS)
from .settings_stream import *  # noqa: E402, F403  (the users' event stream: healing.stream)
