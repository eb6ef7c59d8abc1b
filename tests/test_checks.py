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
    assert checks.check_urls_not_exempt() == []


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


def test_w003_the_middleware_is_no_longer_needed() -> None:
    from django.conf import settings

    assert checks.MIDDLEWARE_PATH not in settings.MIDDLEWARE
    assert "django_orders.E005" not in ids(run_checks())  # retired: nothing to add
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, checks.MIDDLEWARE_PATH]):
        (warning,) = checks.check_middleware()
    assert warning.id == "django_orders.W003"
    assert "no longer needed" in warning.msg


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


@override_settings(DEBUG=False)
@pytest.mark.parametrize(
    ("resolver", "warned"),
    [
        ("django_orders.tenancy.header_tenant_resolver", True),  # spelt out: still the header
        ("tests.hooks.declared_resolver", False),  # the host's own: derived from the caller
        ("tests.hooks.no_such_resolver", False),  # E002 reports it instead
    ],
)
def test_w001_only_when_the_tenant_comes_from_the_header(resolver: str, warned: bool) -> None:
    # Before: W001 said "any caller can act for any tenant by sending the tenant header"
    # whatever the resolver, also for a tenant derived from the authenticated user.
    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": resolver}):
        messages = run_checks(include_deployment_checks=True, tags=["security"])
    assert ("django_orders.W001" in ids(messages)) is warned


@override_settings(DEBUG=False)
def test_w001_sees_the_header_resolver_given_as_a_callable() -> None:
    from django_orders.tenancy import header_tenant_resolver

    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": header_tenant_resolver}):
        messages = run_checks(include_deployment_checks=True, tags=["security"])
    assert "django_orders.W001" in ids(messages)


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


@override_settings(ROOT_URLCONF="tests.urls_namespaced_exempt")
def test_e009_sees_mounts_under_a_host_namespace_and_subclasses() -> None:
    # Before: one reverse("django_orders:order-list") found neither mount.
    (error,) = checks.check_urls_not_exempt()
    assert error.id == "django_orders.E009"
    assert "'/docs/orders'" in error.msg  # api:django_orders:order-list
    assert "'/docs/orders/{order_id}/confirm'" in error.msg
    assert "'/admin/locked/orders'" in error.msg  # a host subclass, via orders_urls()


@override_settings(ROOT_URLCONF="tests.urls_namespaced")
def test_e009_is_silent_for_a_namespaced_mount_outside_the_exempt_paths() -> None:
    from django.urls import reverse

    assert reverse("api:django_orders:order-list") == "/api/orders"
    assert checks.check_urls_not_exempt() == []


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
