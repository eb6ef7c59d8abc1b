"""System checks: every id, reported by ``manage.py check``, never at request time."""

import datetime as dt

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_orders import checks, conf


def ids(messages: list) -> list[str]:
    return [m.id for m in messages]


def test_default_configuration_is_clean() -> None:
    assert checks.check_settings() == []
    assert checks.check_middleware() == []


@override_settings(DJANGO_ORDERS=["not", "a", "dict"])
def test_e001_setting_not_a_dict() -> None:
    assert ids(checks.check_settings()) == ["django_orders.E001"]


@override_settings(DJANGO_ORDERS={"PAGE_SIZ": 10})
def test_e001_unknown_key() -> None:
    (error,) = checks.check_settings()
    assert error.id == "django_orders.E001"
    assert "'PAGE_SIZ'" in error.msg


@pytest.mark.parametrize("key", ["TENANT_RESOLVER", "TENANT_ACCESS_CHECK", "OUTBOX_PUBLISHER"])
def test_e002_dotted_path_that_does_not_import(key: str) -> None:
    with override_settings(DJANGO_ORDERS={key: "tests.hooks.does_not_exist"}):
        (error,) = checks.check_settings()
    assert error.id == "django_orders.E002"
    assert key in error.msg


@override_settings(DJANGO_ORDERS={"TENANT_ID_PATTERN": "^[a-z"})
def test_e003_invalid_tenant_pattern() -> None:
    assert ids(checks.check_settings()) == ["django_orders.E003"]


@pytest.mark.parametrize(
    "value",
    [
        {"PAGE_SIZE": 0},
        {"PAGE_SIZE": 101},
        {"MAX_PAGE_SIZE": 0},
        {"PAGE_SIZE": "20"},
        {"PAGE_SIZE": 50, "MAX_PAGE_SIZE": 10},
        {"PAGE_SIZE": True},
    ],
)
def test_e004_page_sizes_out_of_range(value: dict) -> None:
    with override_settings(DJANGO_ORDERS=value):
        assert ids(checks.check_settings()) == ["django_orders.E004"]


@override_settings(DJANGO_ORDERS={"PAGE_SIZE": 100, "MAX_PAGE_SIZE": 100})
def test_page_size_may_equal_the_maximum() -> None:
    assert checks.check_settings() == []


def test_e005_middleware_missing() -> None:
    from django.conf import settings

    middleware = [m for m in settings.MIDDLEWARE if m != checks.MIDDLEWARE_PATH]
    with override_settings(MIDDLEWARE=middleware):
        assert ids(checks.check_middleware()) == ["django_orders.E005"]


def test_e006_removed_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conf.REMOVED_SETTINGS, "OLD_KEY", "Use NEW_KEY instead.")
    with override_settings(DJANGO_ORDERS={"OLD_KEY": 1}):
        (error,) = checks.check_settings()
    assert error.id == "django_orders.E006"
    assert error.hint == "Use NEW_KEY instead."


@pytest.mark.parametrize(
    "value",
    [
        {"IDEMPOTENCY_TTL": "1h"},
        {"OUTBOX_LEASE": 0},
        {"OUTBOX_RETENTION": dt.timedelta(0)},
        {"OUTBOX_BACKOFF_MAX": -1},
    ],
)
def test_e007_bad_duration(value: dict) -> None:
    with override_settings(DJANGO_ORDERS=value):
        assert ids(checks.check_settings()) == ["django_orders.E007"]


@pytest.mark.parametrize(
    "value",
    [
        {"OUTBOX_BATCH_SIZE": 0},
        {"OUTBOX_MAX_ATTEMPTS": "3"},
        {"MAX_BODY_BYTES": -5},
        {"OUTBOX_POLL_INTERVAL": 0},
        {"OUTBOX_POLL_INTERVAL": "1"},
    ],
)
def test_e008_bad_numbers(value: dict) -> None:
    with override_settings(DJANGO_ORDERS=value):
        assert ids(checks.check_settings()) == ["django_orders.E008"]


@override_settings(DEBUG=False, DJANGO_ORDERS={})
def test_w001_deploy_warns_without_access_check() -> None:
    messages = run_checks(include_deployment_checks=True, tags=["security"])
    assert "django_orders.W001" in ids(messages)
    # Only under --deploy.
    assert "django_orders.W001" not in ids(run_checks(tags=["security"]))


@override_settings(DEBUG=False, DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"})
def test_w001_silent_with_access_check() -> None:
    assert "django_orders.W001" not in ids(run_checks(include_deployment_checks=True))


@override_settings(DEBUG=True)
def test_w001_silent_in_debug() -> None:
    assert "django_orders.W001" not in ids(run_checks(include_deployment_checks=True))


@override_settings(DJANGO_ORDERS={"PAGE_SIZE": 0})
def test_manage_py_check_reports_errors() -> None:
    with pytest.raises(SystemCheckError, match=r"django_orders\.E004"):
        call_command("check")


def test_e009_urls_mounted_under_an_exempt_path() -> None:
    assert checks.check_urls_not_exempt() == []
    with override_settings(ROOT_URLCONF="tests.urls_exempt_mount"):
        (error,) = checks.check_urls_not_exempt()
    assert error.id == "django_orders.E009"
    assert "/docs/api/orders" in error.msg


@override_settings(ROOT_URLCONF="tests.urls_exempt_mount")
@pytest.mark.django_db
def test_under_an_exempt_path_the_api_refuses_to_act_without_a_tenant() -> None:
    from django.test import Client

    from django_orders.models import IdempotencyKey, Order

    response = Client().post(
        "/docs/api/orders",
        data={},
        content_type="application/json",
        headers={"X-Tenant-Id": "shop-1", "Idempotency-Key": "k"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "missing_tenant"
    assert not Order.objects.exists()
    assert not IdempotencyKey.objects.exists()
