"""docs/reference/settings.md: one namespaced setting, documented defaults, reload on change."""

import datetime as dt
import types
import typing

import pytest
from django.test import override_settings

from django_orders.conf import DEFAULTS, OrdersSettings, orders_settings
from django_orders.publishers import LoggingPublisher
from django_orders.serializers import (
    OrderConfirmSerializer,
    OrderCreateSerializer,
    OrderListFilterSerializer,
)
from django_orders.tenancy import header_tenant_resolver


def test_defaults_match_the_contract() -> None:
    settings = OrdersSettings(DEFAULTS)
    assert settings.TENANT_HEADER == "X-Tenant-Id"
    assert settings.TENANT_ID_PATTERN == r"^[A-Za-z0-9._-]{1,64}$"
    assert settings.TENANT_EXEMPT_PATHS == ["/schema/", "/docs/", "/admin/"]
    assert settings.TENANT_RESOLVER is header_tenant_resolver
    assert settings.TENANT_ACCESS_CHECK is None
    assert settings.IDEMPOTENCY_KEY_REQUIRED is True
    assert dt.timedelta(hours=1) == settings.IDEMPOTENCY_TTL
    assert settings.REQUIRE_IF_MATCH is True
    assert settings.DEFAULT_CURRENCY == "USD"
    assert (settings.PAGE_SIZE, settings.MAX_PAGE_SIZE) == (20, 100)
    assert settings.EVENT_SOURCE == "/django-orders"
    assert settings.OUTBOX_PUBLISHER is LoggingPublisher
    assert settings.OUTBOX_PUBLISHER_OPTIONS == {}
    assert settings.OUTBOX_BATCH_SIZE == 100
    assert settings.OUTBOX_POLL_INTERVAL == 1.0
    assert settings.OUTBOX_MAX_ATTEMPTS == 10
    assert dt.timedelta(days=7) == settings.OUTBOX_RETENTION
    assert dt.timedelta(seconds=30) == settings.OUTBOX_LEASE
    assert dt.timedelta(minutes=5) == settings.OUTBOX_BACKOFF_MAX
    assert settings.MAX_BODY_BYTES == 65536
    assert settings.CREATE_SERIALIZER is OrderCreateSerializer
    assert settings.CONFIRM_SERIALIZER is OrderConfirmSerializer
    assert settings.LIST_FILTER_SERIALIZER is OrderListFilterSerializer
    assert settings.ORDER_RULES == []


def test_a_list_of_dotted_paths_is_imported_item_by_item() -> None:
    from tests.hooks import refuse_everything

    with override_settings(
        DJANGO_ORDERS={"ORDER_RULES": ["tests.hooks.refuse_everything", refuse_everything]}
    ):
        assert [refuse_everything, refuse_everything] == orders_settings.ORDER_RULES


def test_override_settings_enters_and_exits_cleanly() -> None:
    assert orders_settings.PAGE_SIZE == 20  # cached now
    with override_settings(DJANGO_ORDERS={"PAGE_SIZE": 5}):
        assert orders_settings.PAGE_SIZE == 5
        assert orders_settings.MAX_PAGE_SIZE == 100  # others keep their defaults
    assert orders_settings.PAGE_SIZE == 20


def test_unrelated_setting_change_keeps_the_cache() -> None:
    with override_settings(DJANGO_ORDERS={"DEFAULT_CURRENCY": "EUR"}):
        assert orders_settings.DEFAULT_CURRENCY == "EUR"
        with override_settings(DEBUG=True):
            assert orders_settings.DEFAULT_CURRENCY == "EUR"
    assert orders_settings.DEFAULT_CURRENCY == "USD"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, dt.timedelta(seconds=90)),
        (1.5, dt.timedelta(seconds=1.5)),
        (dt.timedelta(minutes=2), dt.timedelta(minutes=2)),
    ],
)
def test_durations_accept_seconds_or_timedelta(value: object, expected: dt.timedelta) -> None:
    with override_settings(DJANGO_ORDERS={"IDEMPOTENCY_TTL": value}):
        assert expected == orders_settings.IDEMPOTENCY_TTL


def test_dotted_paths_are_imported_lazily() -> None:
    with override_settings(DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"}):
        from tests.hooks import allow_shop_1

        assert orders_settings.TENANT_ACCESS_CHECK is allow_shop_1


def test_import_error_names_the_setting() -> None:
    with (
        override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "no.such.module.resolver"}),
        pytest.raises(ImportError, match=r"DJANGO_ORDERS\['TENANT_RESOLVER'\]"),
    ):
        _ = orders_settings.TENANT_RESOLVER


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Invalid django-orders setting"):
        _ = orders_settings.NO_SUCH_SETTING


def test_settings_are_not_written_into_django_settings() -> None:
    from django.conf import settings

    _ = orders_settings.PAGE_SIZE
    assert settings.DJANGO_ORDERS == {}


def test_every_setting_is_annotated_with_its_type() -> None:
    # The annotations on OrdersSettings are what mypy sees for orders_settings.X.
    hints = typing.get_type_hints(OrdersSettings)
    assert set(hints) == set(DEFAULTS)
    settings = OrdersSettings(DEFAULTS)
    for name, hint in hints.items():
        assert isinstance(getattr(settings, name), runtime_types(hint)), name


def runtime_types(hint: object) -> tuple[type, ...]:
    """What ``isinstance`` can check of a type hint: ``str | re.Pattern[str]`` →
    ``(str, re.Pattern)``, ``Callable[[Any], str]`` → ``(Callable,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in runtime_types(arg))
    runtime = typing.get_origin(hint) or hint
    assert isinstance(runtime, type), hint
    return (runtime,)


def test_a_read_setting_is_cached_on_the_instance_and_dropped_on_reload() -> None:
    settings = OrdersSettings(DEFAULTS)
    assert "PAGE_SIZE" not in vars(settings)
    assert settings.PAGE_SIZE == 20
    assert vars(settings)["PAGE_SIZE"] == 20  # later reads are plain attribute reads
    settings.reload()
    assert "PAGE_SIZE" not in vars(settings)
