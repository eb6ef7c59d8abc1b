"""Settings for the test suite.

``DB=postgres`` (the default) uses ``DATABASE_URL`` or a local PostgreSQL;
``DB=sqlite`` runs on a SQLite file. Tests that need PostgreSQL are marked ``postgres``
and skipped on SQLite.
"""

import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url

if os.environ.get("ORDERS_PG_DRIVER") == "psycopg2":
    # Django prefers psycopg 3 when it is importable; hide it to run on psycopg2 (the two
    # drivers fail differently on bad input: ValueError vs DataError).
    sys.modules["psycopg"] = None  # type: ignore[assignment]

BASE_DIR = Path(__file__).resolve().parent

# At least 32 bytes: PyJWT warns (an error here) about shorter HMAC keys, and simplejwt
# signs with SECRET_KEY (tests/test_auth_recipes.py).
SECRET_KEY = "django-orders-tests-not-secret-at-all"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES: dict[str, Any]
if os.environ.get("DB", "postgres") == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ORDERS_SQLITE_PATH", str(BASE_DIR / "test.sqlite3")),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so threads and subprocesses see the same database.
            "TEST": {
                "NAME": os.environ.get("ORDERS_SQLITE_TEST_PATH", str(BASE_DIR / "test_db.sqlite3"))
            },
        }
    }
else:
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/django_orders"),
            conn_max_age=0,
        )
    }

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "django_orders",
    "tests.hostapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}

DJANGO_ORDERS: dict = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_orders": {"handlers": ["null"], "level": "INFO"}},
}
