"""Settings of the django-orders example project.

SQLite by default (``make demo``); PostgreSQL when ``DATABASE_URL`` is set, e.g.
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/orders_example``.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",  # wiring edit 1 of 2
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN needed
    "django_orders",  # wiring edit 1 of 2
    "shop",  # the project's own app: customers, orders with host fields, a rule
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A correlation id per request, put on every event (DJANGO_ORDERS["EVENT_ENRICHERS"]).
    "shop.correlation.CorrelationIdMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

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

# Persistent connections: opening a PostgreSQL connection costs a few milliseconds (TCP,
# authentication, a backend process fork), more than a whole order request. Reusing it
# across requests is the single largest throughput win; health checks drop broken ones.
CONN_MAX_AGE = 600

if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=CONN_MAX_AGE, conn_health_checks=True
        )
    }
else:
    # SQLite shared by the web server and the relay: WAL lets readers and a writer work
    # at once, the busy timeout waits for the lock instead of failing, and IMMEDIATE
    # transactions take the write lock up front, so two writers queue rather than
    # deadlock into "database is locked".
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The demo's API authenticates nobody (the tenant is the X-Tenant-Id header), so it
    # uses no DRF authentication: the schema then declares none, and Swagger UI shows no
    # Authorize button. A real project lists its classes here (docs/guide/tenancy.md).
    "DEFAULT_AUTHENTICATION_CLASSES": [],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-orders example",
    "DESCRIPTION": "Multi-tenant orders: idempotent create, If-Match, keyset pagination.",
    "VERSION": "0.1.0",
    # JSON Schema 2020-12: null as a type, which code generators read as Optional.
    "OAS_VERSION": "3.1.0",
    # /schema/ serves the description; it is not an operation of the API.
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Orders with the project's own fields (docs/guide/extending.md): set before the first
# migrate, as AUTH_USER_MODEL.
DJANGO_ORDERS_ORDER_MODEL = "shop.Order"

DJANGO_ORDERS = {
    "DEFAULT_CURRENCY": "USD",
    "OUTBOX_PUBLISHER": "django_orders.publishers.LoggingPublisher",
    # The API of the host fields, and the credit-limit rule.
    "CREATE_SERIALIZER": "shop.serializers.ShopOrderCreateSerializer",
    "CONFIRM_SERIALIZER": "shop.serializers.ShopOrderConfirmSerializer",
    "LIST_FILTER_SERIALIZER": "shop.serializers.ShopOrderFilterSerializer",
    "ORDER_RULES": ["shop.rules.credit_limit"],
    # Every event (the orders' and the project's own) carries the request's correlation id.
    "EVENT_ENRICHERS": ["shop.correlation.add_correlation_id"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_orders": {"handlers": ["console"], "level": "INFO"}},
}
