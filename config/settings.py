"""Sift settings, read from the environment (see .env.example for every variable)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SIFT_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # A command that serves no web request (manage.py sets SIFT_OFFLINE_COMMAND for all but
    # runserver) signs nothing a browser sees: it may run without a key.
    if not (DEBUG or env_bool("SIFT_OFFLINE_COMMAND", False)):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (offline manage.py commands need none)"
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# HTTPS hardening, on by default when DEBUG is off. Cookies marked Secure still reach
# http://localhost (browsers treat it as a secure context), so local runs keep working.
SESSION_COOKIE_SECURE = env_bool("SIFT_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SIFT_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SIFT_HSTS_INCLUDE_SUBDOMAINS", True)
# Behind a TLS-terminating proxy Django sees plain http; trust its X-Forwarded-Proto only
# when the proxy is known to overwrite that header.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Browsers run only Sift's own scripts and styles: no inline script, no eval, nothing from another
# host (htmx and ReDoc are served from here). Inline style attributes stay allowed: the server
# writes progress-bar widths and label colours into them, and they cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# A session ends after SIFT_SESSION_HOURS without a request (config.middleware's
# SessionRefreshMiddleware moves an active one's expiry on, writing at most every 5 minutes).
# Pages poll only while there is something to watch, so an idle open tab lets it expire.
SESSION_COOKIE_AGE = env_int("SIFT_SESSION_HOURS", 12, minimum=1) * 3600
SILENCED_SYSTEM_CHECKS = [
    # W008: the proxy that terminates TLS redirects http to https; redirecting here as well,
    # behind a proxy that does not send X-Forwarded-Proto, would loop forever. Opt in with
    # SECURE_SSL_REDIRECT=true together with TRUST_X_FORWARDED_PROTO=true.
    "security.W008",
    # W021: HSTS preload commits the whole registrable domain, not just Sift's host, to
    # https for years; that is the domain owner's decision, made outside Sift.
    "security.W021",
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "labeling",
    "modeling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.NoStoreMiddleware",
    "config.middleware.SessionRefreshMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "config.middleware.RequestTooLargeMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]


def _database(url: str) -> dict[str, Any]:
    try:
        # Connections live for a minute between requests; the health check replaces one the
        # server closed meanwhile (a restart, a failover) instead of failing the next request.
        config: dict[str, Any] = dict(
            dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] != ":memory:":
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE transactions take the write lock at BEGIN, so concurrent queue leases
        # serialize instead of failing with "database is locked" half-way through.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["CONN_MAX_AGE"] = 0
    return config


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'sift.sqlite3'}")
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Export files; in production point this at storage every web and worker machine shares.
MEDIA_ROOT = Path(env_str("SIFT_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# Uploads above this size are streamed to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
SIFT_MAX_UPLOAD_BYTES = env_int("SIFT_MAX_UPLOAD_BYTES", 512 * 1024 * 1024, minimum=1)
SIFT_MAX_TEXT_CHARS = env_int("SIFT_MAX_TEXT_CHARS", 20_000, minimum=1)
# Import files larger than this are read by a worker, the page showing its progress.
SIFT_IMPORT_INLINE_BYTES = env_int("SIFT_IMPORT_INLINE_BYTES", 2 * 1024 * 1024, minimum=0)
SIFT_LEASE_SECONDS = env_int("SIFT_LEASE_SECONDS", 600, minimum=10)
# Exports of more items than this run as a background job that produces a file.
SIFT_EXPORT_SYNC_LIMIT = env_int("SIFT_EXPORT_SYNC_LIMIT", 200_000, minimum=0)
# What a device-hour of training costs, for the cost column of the model report.
SIFT_PRICE_PER_DEVICE_HOUR = env_float("SIFT_PRICE_PER_DEVICE_HOUR", 0.0, minimum=0.0)
# Webhooks go to public addresses only. A deployment whose receivers live on its own private
# network (10/8, 172.16/12, 192.168/16, fc00::/7) may allow those; loopback, link-local and
# cloud metadata addresses stay refused whatever this says.
SIFT_WEBHOOK_ALLOW_PRIVATE = env_bool("SIFT_WEBHOOK_ALLOW_PRIVATE", False)
# For tests and local development only: webhooks to this very machine (127.0.0.1, ::1). Never
# honoured with DEBUG off, so no production deployment can turn it on by mistake.
SIFT_WEBHOOK_ALLOW_LOOPBACK = DEBUG and env_bool("SIFT_WEBHOOK_ALLOW_LOOPBACK", False)

# Celery: Redis when REDIS_URL is set; otherwise an embedded file-system broker that needs no
# server, so `make run` works on a bare machine with a real worker process.
REDIS_URL = env_str("REDIS_URL", "")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A task whose worker died unacknowledged is handed to another worker after this long.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "visibility_timeout": env_int("SIFT_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=1)
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# The cache holds rate-limit counters that every web process must share, and what workers
# hand the web app (a searched phrase's embedding): Redis when REDIS_URL is set, otherwise
# files under SIFT_VAR_DIR (one machine, like the embedded broker). Processes that share a
# cache share SIFT_CACHE_PREFIX too.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A dead Redis must not hang a log-in: the limits then go unenforced for a moment.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            "KEY_PREFIX": env_str("SIFT_CACHE_PREFIX", ""),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "django-cache"),
            "KEY_PREFIX": env_str("SIFT_CACHE_PREFIX", ""),
        }
    }
# Failed log-ins per username and address and per address across usernames, and API tokens
# created per user or unknown tokens sent per address, within each window; beyond that Sift
# answers 429 with Retry-After.
SIFT_RATE_LIMIT_WINDOW = env_int("SIFT_RATE_LIMIT_WINDOW", 300, minimum=1)
SIFT_LOGIN_ATTEMPTS = env_int("SIFT_LOGIN_ATTEMPTS", 10, minimum=1)
SIFT_LOGIN_ADDRESS_ATTEMPTS = env_int("SIFT_LOGIN_ADDRESS_ATTEMPTS", 20, minimum=1)
SIFT_TOKEN_ATTEMPTS = env_int("SIFT_TOKEN_ATTEMPTS", 20, minimum=1)
# Behind a proxy every request comes from the proxy's address; trust the address it appends
# to X-Forwarded-For only when the proxy always sets that header.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
# Workers log through LOGGING above, so LOG_FORMAT=json covers their lines too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Training can go to its own queue, consumed by workers on GPU machines (docker-compose.yml).
SIFT_TRAINING_QUEUE = env_str("SIFT_TRAINING_QUEUE", "celery")
# Fine-tuning has a queue of its own, so embedding, head training and scoring never wait
# behind it (`make run`'s worker consumes both queues; docker-compose's GPU worker `gpu`).
SIFT_FINETUNE_QUEUE = env_str("SIFT_FINETUNE_QUEUE", "gpu")
# Fine-tuning checkpoints and weights. With workers on several machines this must be storage
# they all reach (a shared volume, NFS...): a run resumes on whichever worker gets it next.
SIFT_CHECKPOINT_DIR = Path(env_str("SIFT_CHECKPOINT_DIR", str(VAR_DIR / "checkpoints")))
# auto: CUDA when the worker sees a GPU, else the CPU; or cpu, cuda, cuda:N.
SIFT_TRAINING_DEVICE = env_str("SIFT_TRAINING_DEVICE", "auto")
if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", SIFT_TRAINING_DEVICE):
    raise ImproperlyConfigured(
        f"SIFT_TRAINING_DEVICE must be auto, cpu, cuda or cuda:N, got {SIFT_TRAINING_DEVICE!r}"
    )
# Precision of the encoder when it embeds items (never when it fine-tunes): fp32, int8 (ONNX
# Runtime on the CPU) or auto, int8 on a worker without a GPU (README, "int8 on CPU"). int8
# vectors are a space of their own; workers that share projects should embed alike.
SIFT_ENCODER_PRECISION = env_str("SIFT_ENCODER_PRECISION", "auto")
if SIFT_ENCODER_PRECISION not in ("auto", "fp32", "int8"):
    raise ImproperlyConfigured(
        f"SIFT_ENCODER_PRECISION must be auto, fp32 or int8, got {SIFT_ENCODER_PRECISION!r}"
    )
# Stated power draw of the training device in watts, for energy where NVML cannot measure it;
# 0 uses a typical figure for the device kind (CPU 65 W, CUDA GPU 300 W).
SIFT_DEVICE_WATTS = env_float("SIFT_DEVICE_WATTS", 0.0, minimum=0.0)
# Fine-tuning hyper-parameters a deployment may want to change (the rest: FineTuneConfig).
SIFT_FINETUNE_EPOCHS = env_int("SIFT_FINETUNE_EPOCHS", 3, minimum=1)
SIFT_FINETUNE_MAX_LENGTH = env_int("SIFT_FINETUNE_MAX_LENGTH", 128, minimum=8)
SIFT_FINETUNE_BATCH_SIZE = env_int("SIFT_FINETUNE_BATCH_SIZE", 16, minimum=1)
SIFT_FINETUNE_CHECKPOINT_STEPS = env_int("SIFT_FINETUNE_CHECKPOINT_STEPS", 50, minimum=1)
# A promoted fine-tune re-embeds and scores a larger pool in shards of this many items, one task
# each on the fine-tuning queue, spread over its workers (modeling/services/rescoring.py).
SIFT_SCORING_SHARD_ITEMS = env_int("SIFT_SCORING_SHARD_ITEMS", 5000, minimum=1)
# Projects fine-tune by themselves as their labels grow (their finetune_growth setting); off
# here, only when a lead or a script asks.
SIFT_AUTO_FINETUNE = env_bool("SIFT_AUTO_FINETUNE", True)
# Optimizer steps a fine-tune takes at least, whatever the epochs (FineTuneConfig.min_steps).
SIFT_FINETUNE_MIN_STEPS = env_int("SIFT_FINETUNE_MIN_STEPS", 40, minimum=0)
CELERY_TASK_ROUTES = {
    "modeling.tasks.refresh_model": {"queue": SIFT_TRAINING_QUEUE},
    # Sent by each worker as it (re)connects; a worker that trains must be the one to read it.
    "modeling.tasks.resume_retrains": {"queue": SIFT_TRAINING_QUEUE},
    "modeling.tasks.embed_phrase": {"queue": SIFT_TRAINING_QUEUE},
    "modeling.tasks.finetune_model": {"queue": SIFT_FINETUNE_QUEUE},
    "modeling.tasks.rescore_pool": {"queue": SIFT_FINETUNE_QUEUE},
    "modeling.tasks.score_shard": {"queue": SIFT_FINETUNE_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The web app must not hang when the broker is down: fail fast, keep labeling, retry later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PAGINATION_CLASS": "labeling.api.pagination.IdCursorPagination",
    "DEFAULT_PARSER_CLASSES": [
        "labeling.api.errors.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
# ReDoc comes from the drf-spectacular-sidecar package, served as a static file like htmx.
SPECTACULAR_SETTINGS = {"TITLE": "Sift API", "VERSION": "1.0.0", "REDOC_DIST": "SIDECAR"}

LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
