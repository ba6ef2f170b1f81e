"""Settings, read from the environment (see README "Configuration").

With ``DATABASE_URL``/``REDIS_URL`` unset, an embedded PostgreSQL and Redis under ``./var/`` are started
(or reused); see :mod:`mmweb.embedded`.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from mmweb import embedded
from mmweb.env import (
    ConfigError,
    celery_broker_url,
    check_redis_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ConfigError("SECRET_KEY is shorter than 32 characters; generate a long random value")
        return key
    # Local runs: one random key kept under ./var so sessions survive restarts. Never committed.
    path = embedded.var_dir() / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# No "testserver" here: Django's test runner adds it for the test client itself.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", ["http://127.0.0.1:8000", "http://localhost:8000"])

_db_url = env_str("DATABASE_URL") or None
EMBEDDED_POSTGRES = _db_url is None
DATABASES = {"default": parse_database_url(_db_url if _db_url else embedded.ensure_postgres())}

_redis_url = env_str("REDIS_URL") or None
EMBEDDED_REDIS = _redis_url is None
# The embedded Redis is only named here; it starts where it is first used (the channel layer, the Celery broker),
# so commands that need no Redis (shell, migrate, import_marketdata) leave none running.
REDIS_URL = check_redis_url(_redis_url) if _redis_url else embedded.redis_url()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "apps.marketdata",
    "apps.trading",
    "apps.control",
    "apps.live",
    "apps.dashboard",
    "apps.ops",
    "apps.review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "mmweb.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.ops.logs.LogContextMiddleware",  # session_id and user on the log lines of a request
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes asks: it turns a locked-out login into its 429 answer
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): after MM_LOGIN_FAILURE_LIMIT failed logins from one IP address, or against one
# user name, further logins from it / for it are refused (the right password too) for MM_LOGIN_COOLOFF_MIN minutes.
# Covers /login/ and /admin/login/ (both authenticate through the backends below).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # logs nobody in; gives the admin role its model permissions in the Django admin (apps.control.permissions)
    "apps.control.permissions.AdminRoleBackend",
]
AXES_FAILURE_LIMIT = env_int("MM_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MM_LOGIN_COOLOFF_MIN", 15, minimum=1, maximum=7 * 24 * 60))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# Browser hardening (see docs/console-roles.md "Production settings"). MM_SECURE turns on https-only cookies,
# the redirect to https and HSTS. Its default: on when not in DEBUG and the console answers to a host other than
# the loopback ones (ALLOWED_HOSTS), i.e. when it is served to anyone else; off for `make run` on
# http://127.0.0.1 (a Secure cookie is not sent back over plain http, so the login would never stick).
# MM_SECURE=0/1 overrides it either way; `check --deploy` warns when it is off.
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page (hx-headers), never from the cookie
CSRF_FAILURE_VIEW = "apps.dashboard.access.csrf_failure"
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MM_SECURE = env_bool("MM_SECURE", not DEBUG and not set(ALLOWED_HOSTS) <= _LOOPBACK_HOSTS)
SECURE_SSL_REDIRECT = MM_SECURE
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = MM_SECURE
SECURE_HSTS_SECONDS = env_int("MM_HSTS_SECONDS", 31_536_000 if MM_SECURE else 0, minimum=0, maximum=63_072_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MM_HSTS_INCLUDE_SUBDOMAINS", MM_SECURE)
SECURE_HSTS_PRELOAD = env_bool("MM_HSTS_PRELOAD", MM_SECURE)
if env_bool("MM_BEHIND_PROXY", False):
    # Only behind a proxy that sets X-Forwarded-Proto itself (and strips a client's): trusting it otherwise
    # would let any client claim https.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    AXES_IPWARE_PROXY_COUNT = 1
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

ROOT_URLCONF = "mmweb.urls"
ASGI_APPLICATION = "mmweb.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.dashboard.context_processors.permissions",
                "apps.ops.context_processors.alerts",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = embedded.var_dir() / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "mmweb.layers.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30, "start_embedded": EMBEDDED_REDIS},
    },
    # the live page's snapshots and events: pub/sub, one Redis message per snapshot per web process
    "live": {
        "BACKEND": "apps.live.layers.LivePubSubLayer",
        "CONFIG": {"hosts": [REDIS_URL], "start_embedded": EMBEDDED_REDIS},
    },
}

# Celery: the quoting loop runs on its own queue; a task is acked on receipt because a redelivered quoting
# task is made harmless by the session lease, not by the broker (see apps.trading.lease).
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {
    "apps.trading.tasks.run_quoting_session": {"queue": "quoting"},
    "apps.trading.tasks.*": {"queue": "periodic"},
}
CELERY_TASK_DEFAULT_QUEUE = "periodic"
CELERY_IMPORTS = ["apps.trading.tasks_sweep"]
CELERY_BEAT_SCHEDULE = {
    "dead-mans-switch": {"task": "apps.trading.tasks.sweep_dead_sessions", "schedule": 1.0},
    "alerts": {"task": "apps.ops.tasks.evaluate_alerts", "schedule": float(env_int("MM_ALERT_SWEEP_S", 2, minimum=1))},
    # the review page's fill-rate/spreads aggregates, folded as sessions record so a first read finds them built
    "review-aggregates": {
        "task": "apps.review.tasks.fold_decisions",
        "schedule": float(env_int("MM_REVIEW_FOLD_S", 5, minimum=1, maximum=3600)),
    },
}
CELERY_TIMEZONE = "UTC"

# Quoting loop timing (seconds unless named otherwise).
MM_LOOP_INTERVAL_MS = env_int("MM_LOOP_INTERVAL_MS", 100, minimum=10, maximum=5000)
MM_PUBLISH_INTERVAL_MS = env_int("MM_PUBLISH_INTERVAL_MS", 250, minimum=50, maximum=10000)
MM_LEASE_TTL_S = env_int("MM_LEASE_TTL_S", 5, minimum=2, maximum=600)
# A session whose loop died more than this many times in 10 minutes is marked FAILED instead of restarted.
MM_MAX_RESTARTS = env_int("MM_MAX_RESTARTS", 3, minimum=0, maximum=100)
MM_WRITER_FLUSH_MS = env_int("MM_WRITER_FLUSH_MS", 500, minimum=10, maximum=60000)
# Where the batched writer spills rows it could not write while the database was away (replayed on recovery).
MM_SPILL_DIR = Path(env_str("MM_SPILL_DIR") or (embedded.var_dir() / "spill"))
# Write-ahead journals of the quoting loops' writers (a killed worker's unflushed rows are replayed from here).
MM_JOURNAL_DIR = Path(env_str("MM_JOURNAL_DIR") or (embedded.var_dir() / "journal"))

# Binance public market data (apps/venues/binance; docs/venues-binance.md). Tests point these at 127.0.0.1.
MM_BINANCE_WS_URL = env_str("MM_BINANCE_WS_URL", "wss://fstream.binance.com")
MM_BINANCE_REST_URL = env_str("MM_BINANCE_REST_URL", "https://fapi.binance.com")
MM_BINANCE_SPOT_WS_URL = env_str("MM_BINANCE_SPOT_WS_URL", "wss://stream.binance.com:9443")
MM_BINANCE_SPOT_REST_URL = env_str("MM_BINANCE_SPOT_REST_URL", "https://api.binance.com")

# Alerts (apps.ops; see docs/console-ops.md). Thresholds in seconds.
MM_ALERT_FEED_STALE_S = env_int("MM_ALERT_FEED_STALE_S", 5, minimum=1, maximum=86400)
MM_ALERT_HEARTBEAT_STALE_S = env_int("MM_ALERT_HEARTBEAT_STALE_S", 10, minimum=1, maximum=86400)
MM_ALERT_ESTIMATOR_STATES = env_list("MM_ALERT_ESTIMATOR_STATES", ["failed"])
if not set(MM_ALERT_ESTIMATOR_STATES) <= {"warming", "ok", "stale", "failed"}:
    raise ConfigError(f"MM_ALERT_ESTIMATOR_STATES: each of warming, ok, stale, failed; got {MM_ALERT_ESTIMATOR_STATES}")
MM_ALERT_LOOKBACK_S = env_int("MM_ALERT_LOOKBACK_S", 300, minimum=0, maximum=7 * 86400)
MM_ALERT_EMAILS = env_list("MM_ALERT_EMAILS", [])  # empty: the active admins' and operators' e-mail addresses
MM_ALERT_WEBHOOK_URL = env_str("MM_ALERT_WEBHOOK_URL") or ""
if MM_ALERT_WEBHOOK_URL and not MM_ALERT_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ConfigError(f"MM_ALERT_WEBHOOK_URL must be an http:// or https:// URL, got {MM_ALERT_WEBHOOK_URL!r}")
MM_ALERT_WEBHOOK_TIMEOUT_S = env_int("MM_ALERT_WEBHOOK_TIMEOUT_S", 3, minimum=1, maximum=60)
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1, maximum=300)  # s: a hung mail server must not stall the sweep
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "mm-alerts@localhost"
# /metrics: a scraper sends "Authorization: Bearer <MM_METRICS_TOKEN>"; a logged-in admin may read it too.
MM_METRICS_TOKEN = env_str("MM_METRICS_TOKEN") or ""

# Logs: one JSON object per line (MM_LOG_FORMAT=json), or key=value text for a terminal (plain); see apps.ops.logs.
MM_LOG_FORMAT = env_str("MM_LOG_FORMAT") or "json"
if MM_LOG_FORMAT not in ("json", "plain"):
    raise ConfigError(f"MM_LOG_FORMAT must be json or plain, got {MM_LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.ops.logs.json_formatter"},
        "plain": {"()": "apps.ops.logs.plain_formatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": MM_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # every login is logged at INFO; failures and lock-outs at WARNING
    },
}

# Hyperliquid (apps/venues/hyperliquid): "testnet" or "mainnet"; the URLs default to the network's public ones (tests
# point them at 127.0.0.1). Keys are read from the environment by the connector only, never from settings.
MM_HYPERLIQUID_NETWORK = env_str("MM_HYPERLIQUID_NETWORK", "testnet")
MM_HYPERLIQUID_API_URL = env_str("MM_HYPERLIQUID_API_URL", "")
MM_HYPERLIQUID_WS_URL = env_str("MM_HYPERLIQUID_WS_URL", "")
# how often a live loop asks its venue for the account (margin report, funding rate and payments), in ms; sooner
# after our position moved (apps/trading/loop.py, QuotingLoop._poll_account). Venues without an account: unused.
MM_ACCOUNT_POLL_MS = env_int("MM_ACCOUNT_POLL_MS", 5000, minimum=100, maximum=600_000)
