"""The ``DJANGO_ORDERS`` setting, read through one object with documented defaults.

Modelled on ``rest_framework.settings``: values are looked up lazily and cached per
attribute, dotted paths are imported on first use with an error that names the setting,
and the cache is dropped on Django's ``setting_changed`` signal so ``override_settings``
works in tests. Nothing is copied into module constants at import time.

Usage::

    from django_orders.conf import orders_settings
    orders_settings.PAGE_SIZE

Each setting is annotated on :class:`OrdersSettings` with the type it has once read (a
dotted path imported, a duration as a ``timedelta``), so mypy and readers see it, and a
misspelt name is a type error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

SETTING_NAME = "DJANGO_ORDERS"

DEFAULTS: dict[str, Any] = {
    # Tenancy
    "TENANT_HEADER": "X-Tenant-Id",
    "TENANT_ID_PATTERN": r"^[A-Za-z0-9._-]{1,64}$",
    "TENANT_EXEMPT_PATHS": ["/schema/", "/docs/", "/admin/"],
    "TENANT_RESOLVER": "django_orders.tenancy.header_tenant_resolver",
    "TENANT_ACCESS_CHECK": None,
    "ROW_LEVEL_SECURITY": False,
    # Idempotency and conditional requests
    "IDEMPOTENCY_KEY_REQUIRED": True,
    "IDEMPOTENCY_TTL": dt.timedelta(hours=1),
    "REQUIRE_IF_MATCH": True,
    # Resources
    "DEFAULT_CURRENCY": "USD",
    "PAGE_SIZE": 20,
    "MAX_PAGE_SIZE": 100,
    "MAX_BODY_BYTES": 65536,
    # Reads on streaming replicas (docs/guide/replicas.md)
    "READ_REPLICAS": [],
    "READ_YOUR_WRITES_WINDOW": dt.timedelta(seconds=5),
    "READ_YOUR_WRITES_COOKIE": "django_orders_read_primary",
    # Events and the outbox relay
    "EVENT_SOURCE": "/django-orders",
    "EVENT_TYPE_PREFIX": "",
    "EVENT_ENRICHERS": [],
    "OUTBOX_PUBLISHER": "django_orders.publishers.LoggingPublisher",
    "OUTBOX_PUBLISHER_OPTIONS": {},
    "OUTBOX_BATCH_SIZE": 100,
    "OUTBOX_POLL_INTERVAL": 1.0,
    "OUTBOX_MAX_ATTEMPTS": 10,
    "OUTBOX_RETENTION": dt.timedelta(days=7),
    "OUTBOX_LEASE": dt.timedelta(seconds=30),
    "OUTBOX_BACKOFF_MAX": dt.timedelta(minutes=5),
    "OUTBOX_DEAD_BLOCKS_ORDER": True,
    # Observability of the relay
    "OUTBOX_METRICS": None,
    "OUTBOX_METRICS_PORT": None,
    "OUTBOX_METRICS_ADDRESS": "0.0.0.0",
    "OUTBOX_METRICS_INTERVAL": dt.timedelta(seconds=15),
    # Host extensions (docs/guide/extending.md)
    "CREATE_SERIALIZER": "django_orders.serializers.OrderCreateSerializer",
    "CONFIRM_SERIALIZER": "django_orders.serializers.OrderConfirmSerializer",
    "LIST_FILTER_SERIALIZER": "django_orders.serializers.OrderListFilterSerializer",
    "ORDER_RULES": [],
}

# Settings whose value is a dotted path, imported on first access.
IMPORT_STRINGS = frozenset(
    {
        "TENANT_RESOLVER",
        "TENANT_ACCESS_CHECK",
        "OUTBOX_PUBLISHER",
        "CREATE_SERIALIZER",
        "CONFIRM_SERIALIZER",
        "LIST_FILTER_SERIALIZER",
        "OUTBOX_METRICS",
    }
)

# Settings whose value is a list of dotted paths, each imported on first access.
IMPORT_LISTS = frozenset({"EVENT_ENRICHERS", "ORDER_RULES"})

# Settings given as a duration: a timedelta or a number of seconds.
DURATIONS = frozenset(
    {
        "IDEMPOTENCY_TTL",
        "OUTBOX_RETENTION",
        "OUTBOX_LEASE",
        "OUTBOX_BACKOFF_MAX",
        "OUTBOX_METRICS_INTERVAL",
        "READ_YOUR_WRITES_WINDOW",
    }
)

# Keys that once existed, with what to do instead. Using one is a system check error.
REMOVED_SETTINGS: dict[str, str] = {}


def import_from_string(value: str, setting_name: str) -> Any:
    """Import a dotted path, naming the setting in the error if it fails."""
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImportError(
            f"Could not import {value!r} for setting {SETTING_NAME}[{setting_name!r}]: "
            f"{exc.__class__.__name__}: {exc}."
        ) from exc


def to_timedelta(value: Any, setting_name: str) -> dt.timedelta:
    """Accept a ``timedelta`` or a number of seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    raise ImproperlyConfigured(
        f"{SETTING_NAME}[{setting_name!r}] must be a datetime.timedelta or a number of "
        f"seconds, not {value!r}."
    )


class OrdersSettings:
    """Attribute access to ``settings.DJANGO_ORDERS`` with defaults.

    Each attribute is resolved on first access and cached; :meth:`reload` drops the cache.
    """

    # The type of each setting as read (docs/reference/settings.md says what each means).
    # Annotations only, no values: a read still goes through __getattr__ the first time.
    # A test keeps this list and DEFAULTS the same.
    TENANT_HEADER: str
    TENANT_ID_PATTERN: str | re.Pattern[str]
    TENANT_EXEMPT_PATHS: Sequence[str]
    TENANT_RESOLVER: Callable[[Any], str | None]
    TENANT_ACCESS_CHECK: Callable[[Any, str], bool] | None
    ROW_LEVEL_SECURITY: bool
    IDEMPOTENCY_KEY_REQUIRED: bool
    IDEMPOTENCY_TTL: dt.timedelta
    REQUIRE_IF_MATCH: bool
    DEFAULT_CURRENCY: str
    PAGE_SIZE: int
    MAX_PAGE_SIZE: int
    MAX_BODY_BYTES: int
    READ_REPLICAS: Sequence[str]
    READ_YOUR_WRITES_WINDOW: dt.timedelta
    READ_YOUR_WRITES_COOKIE: str
    EVENT_SOURCE: str
    EVENT_TYPE_PREFIX: str
    EVENT_ENRICHERS: Sequence[Callable[[Any], None]]
    OUTBOX_PUBLISHER: type[Any]
    OUTBOX_PUBLISHER_OPTIONS: Mapping[str, Any]
    OUTBOX_BATCH_SIZE: int
    OUTBOX_POLL_INTERVAL: float
    OUTBOX_MAX_ATTEMPTS: int
    OUTBOX_RETENTION: dt.timedelta
    OUTBOX_LEASE: dt.timedelta
    OUTBOX_BACKOFF_MAX: dt.timedelta
    OUTBOX_DEAD_BLOCKS_ORDER: bool
    OUTBOX_METRICS: type[Any] | None
    OUTBOX_METRICS_PORT: int | None
    OUTBOX_METRICS_ADDRESS: str
    OUTBOX_METRICS_INTERVAL: dt.timedelta
    CREATE_SERIALIZER: type[Any]
    CONFIRM_SERIALIZER: type[Any]
    LIST_FILTER_SERIALIZER: type[Any]
    ORDER_RULES: Sequence[Callable[[Any], None]]

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        self.defaults = dict(defaults if defaults is not None else DEFAULTS)
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> Mapping[str, Any]:
        """The host's ``DJANGO_ORDERS`` dict (empty when unset)."""
        value = getattr(settings, SETTING_NAME, None)
        return value if isinstance(value, Mapping) else {}

    if not TYPE_CHECKING:  # mypy sees the annotations above, and a typo as an error

        def __getattr__(self, attr: str) -> Any:
            if attr not in self.defaults:
                raise AttributeError(f"Invalid django-orders setting: {attr!r}")
            value = self.user_settings.get(attr, self.defaults[attr])
            if attr in IMPORT_STRINGS and isinstance(value, str):
                value = import_from_string(value, attr)
            elif attr in IMPORT_LISTS:
                value = [
                    import_from_string(item, attr) if isinstance(item, str) else item
                    for item in value
                ]
            elif attr in DURATIONS:
                value = to_timedelta(value, attr)
            self._cached.add(attr)
            setattr(self, attr, value)
            return value

    def reload(self) -> None:
        """Forget every cached value; the next access reads the settings again."""
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()


orders_settings = OrdersSettings(DEFAULTS)


@receiver(setting_changed)
def _reload_orders_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        orders_settings.reload()
