"""Settings of the benchmark project: the package mounted at ``/``, reference views at ``/ref/``.

Both the package's views and the reference views run in this one project, under the same
middleware, DRF settings and database connection settings, so a ratio between them measures
the views and nothing else.

``BENCH_DATABASE_URL`` selects the database (default: a dedicated ``orders_bench`` database,
never a test database).
"""

import os

import dj_database_url

SECRET_KEY = "django-orders-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "benchproject.urls"
WSGI_APPLICATION = "benchproject.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "django_orders",
]

# A lean stack, the same for every view measured: no sessions or auth middleware (nothing
# here authenticates), the tenant middleware as the contract's wiring edit 2 asks.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

# Persistent connections: a new PostgreSQL connection per request (fork of a backend,
# authentication) costs more than a whole order request. One connection per gunicorn
# thread, kept for the whole run. No health checks: they add a ``SELECT 1`` per request.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/orders_bench"),
        conn_max_age=None,
        conn_health_checks=False,
    )
}

if os.environ.get("BENCH_DB_ROLE"):
    # bench/run_rls.py: act as a role that row-level security policies bind (the superuser
    # the benchmark connects as is never bound), set at connection start.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c role={os.environ['BENCH_DB_ROLE']}"
    )

REST_FRAMEWORK = {
    # Nothing authenticates in the benchmark; the same empty lists apply to the package's
    # views (they honour the host's DRF settings) and to the reference views.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

DJANGO_ORDERS = {
    "DEFAULT_CURRENCY": "USD",
    "OUTBOX_PUBLISHER": os.environ.get(
        "BENCH_OUTBOX_PUBLISHER", "django_orders.publishers.LoggingPublisher"
    ),
    "OUTBOX_PUBLISHER_OPTIONS": {},
    # bench/run_rls.py: the same server with row-level security on and off.
    "ROW_LEVEL_SECURITY": bool(os.environ.get("BENCH_RLS")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "null": {"class": "logging.NullHandler"},
        "stderr": {"class": "logging.StreamHandler"},
    },
    "loggers": {
        # One log line per event or request would measure the terminal, not the package.
        # The relay benchmark sets BENCH_ORDERS_LOG=INFO to see "Outbox relay started"
        # (one line per batch of 100 events: negligible).
        "django_orders": {
            "handlers": ["stderr" if os.environ.get("BENCH_ORDERS_LOG") else "null"],
            "level": os.environ.get("BENCH_ORDERS_LOG", "WARNING"),
            "propagate": False,
        },
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}

if os.environ.get("BENCH_OTEL"):
    # bench/run_relay.py --observe: the relay traces with OpenTelemetry's SDK.
    from benchproject.otel import setup as setup_tracing

    setup_tracing()
