"""System checks: every id, reported by ``manage.py check``, never at request time."""

import datetime as dt
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_orders import checks, conf
from django_orders.routers import ReplicaRouter


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
        {"OUTBOX_METRICS_PORT": 65536},
        {"OUTBOX_METRICS_PORT": "9464"},
        {"OUTBOX_METRICS_PORT": True},
    ],
)
def test_e008_bad_numbers(value: dict) -> None:
    with override_settings(DJANGO_ORDERS=value):
        assert ids(checks.check_settings()) == ["django_orders.E008"]


@pytest.mark.parametrize("port", [None, 0, 9464])
def test_a_metrics_port_is_none_or_a_port_number(port: int | None) -> None:
    with override_settings(DJANGO_ORDERS={"OUTBOX_METRICS_PORT": port}):
        assert ids(checks.check_settings()) == []


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


WEBHOOK = "django_orders.publishers.WebhookPublisher"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def webhook_settings(secret: object, publisher: object = WEBHOOK) -> dict:
    return {
        "OUTBOX_PUBLISHER": publisher,
        "OUTBOX_PUBLISHER_OPTIONS": {"url": "https://hooks.example.com/orders", "secret": secret},
    }


def test_w002_silent_for_whsec_secrets() -> None:
    for secret in (STANDARD_SECRET, [STANDARD_SECRET, "whsec_" + "b" * 44]):
        with override_settings(DJANGO_ORDERS=webhook_settings(secret)):
            assert checks.check_webhook_secrets() == []


@pytest.mark.parametrize(
    "secret",
    [
        "my-plain-secret",
        "whsec_not base64!",  # the publisher refuses it too
        "whsec_",  # an empty key
    ],
)
def test_w002_a_secret_not_in_whsec_form_warns(secret: str) -> None:
    with override_settings(DJANGO_ORDERS=webhook_settings(secret)):
        (warning,) = checks.check_webhook_secrets()
    assert warning.id == "django_orders.W002"
    assert "'secret' is not a Standard Webhooks secret" in warning.msg
    if secret != "whsec_":  # (that much the message does say)
        assert secret not in warning.msg + warning.hint  # never echoed into logs
    assert '"whsec_" + base64.b64encode(os.urandom(32)).decode()' in warning.hint
    assert "secret.encode()" in warning.hint


def test_w002_names_each_plain_secret_of_a_rotation_list() -> None:
    settings = webhook_settings([STANDARD_SECRET, "old plain one", "another"])
    with override_settings(DJANGO_ORDERS=settings):
        messages = checks.check_webhook_secrets()
    assert ids(messages) == ["django_orders.W002"] * 2
    assert ["#2" in messages[0].msg, "#3" in messages[1].msg] == [True, True]


def test_w002_the_suggested_generator_gives_a_secret_that_passes() -> None:
    import base64
    import os

    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with override_settings(DJANGO_ORDERS=webhook_settings(secret)):
        assert checks.check_webhook_secrets() == []


def test_w002_the_publisher_as_a_class_or_a_subclass() -> None:
    from django_orders.publishers import WebhookPublisher

    class SignedElsewhere(WebhookPublisher):
        pass

    for publisher in (WebhookPublisher, SignedElsewhere):
        with override_settings(DJANGO_ORDERS=webhook_settings("plain", publisher)):
            assert ids(checks.check_webhook_secrets()) == ["django_orders.W002"]


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the logging publisher
        webhook_settings("plain", "django_orders.publishers.RedisStreamPublisher"),
        webhook_settings("plain", "tests.hooks.does_not_exist"),  # E002's business
        webhook_settings(None),  # no secret: the publisher refuses to start
    ],
)
def test_w002_silent_for_other_publishers_and_unusable_settings(settings: dict) -> None:
    with override_settings(DJANGO_ORDERS=settings):
        assert checks.check_webhook_secrets() == []


@override_settings(DJANGO_ORDERS=webhook_settings("plain"))
def test_w002_is_reported_by_manage_py_check_and_can_be_silenced() -> None:
    with pytest.raises(SystemCheckError, match=r"django_orders\.W002"):
        call_command("check", fail_level="WARNING")
    with override_settings(SILENCED_SYSTEM_CHECKS=["django_orders.W002"]):
        call_command("check", fail_level="WARNING")


@pytest.mark.parametrize(
    ("orders", "check"),
    [
        ({"EVENT_TYPE_PREFIX": "com.example"}, None),
        ({"EVENT_TYPE_PREFIX": "com.example."}, None),
        ({"EVENT_TYPE_PREFIX": "io.my-shop.orders"}, None),
        ({"EVENT_TYPE_PREFIX": "Com.Example"}, "django_orders.E014"),
        ({"EVENT_TYPE_PREFIX": "com..example"}, "django_orders.E014"),
        ({"EVENT_TYPE_PREFIX": ".com"}, "django_orders.E014"),
        ({"EVENT_TYPE_PREFIX": "com example"}, "django_orders.E014"),
        ({"EVENT_TYPE_PREFIX": 7}, "django_orders.E014"),
        ({"EVENT_ENRICHERS": "tests.test_outbox_recording.correlate"}, "django_orders.E015"),
        ({"ORDER_RULES": "tests.hooks.refuse_everything"}, "django_orders.E015"),
    ],
)
def test_e014_event_type_prefix_and_e015_list_settings(
    orders: dict[str, Any], check: str | None
) -> None:
    with override_settings(DJANGO_ORDERS=orders):
        assert [e.id for e in checks.check_settings()] == ([check] if check else [])


def test_e002_an_enricher_that_does_not_import() -> None:
    orders = {"EVENT_ENRICHERS": ["tests.test_outbox_recording.correlate", "no.such.thing"]}
    with override_settings(DJANGO_ORDERS=orders):
        errors = checks.check_settings()
    assert [e.id for e in errors] == ["django_orders.E002"]
    assert "EVENT_ENRICHERS" in errors[0].msg


# -- host extensions (docs/guide/extending.md) -----------------------------------------


def extension_ids(**orders_settings: object) -> list[str]:
    with override_settings(DJANGO_ORDERS=orders_settings):
        return ids(checks.check_host_extensions())


def test_the_extension_settings_of_the_docs_are_clean() -> None:
    assert checks.check_host_extensions() == []
    assert (
        extension_ids(
            CREATE_SERIALIZER="tests.hooks.ReferencedCreateSerializer",
            CONFIRM_SERIALIZER="tests.hooks.MinimumConfirmSerializer",
            LIST_FILTER_SERIALIZER="tests.hooks.CurrencyFilterSerializer",
            ORDER_RULES=["tests.hooks.refuse_everything"],
        )
        == []
    )


@override_settings(DJANGO_ORDERS_ORDER_MODEL="auth.User")
def test_e010_the_order_model_must_be_an_abstract_order() -> None:
    (error,) = checks.check_host_extensions()
    assert error.id == "django_orders.E010"
    assert "auth.User" in error.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CREATE_SERIALIZER", "tests.hooks.MinimumConfirmSerializer"),
        ("CONFIRM_SERIALIZER", "rest_framework.serializers.Serializer"),
        ("LIST_FILTER_SERIALIZER", "tests.hooks.refuse_everything"),
    ],
)
def test_e011_a_serializer_that_does_not_extend_the_packages(key: str, value: str) -> None:
    assert extension_ids(**{key: value}) == ["django_orders.E011"]


def test_e012_an_order_rule_that_is_not_callable() -> None:
    assert extension_ids(ORDER_RULES=["tests.hooks.NOT_CALLABLE"]) == ["django_orders.E012"]


def test_e015_order_rules_that_are_not_a_list() -> None:
    with override_settings(DJANGO_ORDERS={"ORDER_RULES": "tests.hooks.refuse_everything"}):
        assert ids(checks.check_settings()) == ["django_orders.E015"]
        assert checks.check_host_extensions() == []


def test_e013_a_serializer_field_writing_to_the_domain_layers_fields() -> None:
    with override_settings(
        DJANGO_ORDERS={"CONFIRM_SERIALIZER": "tests.hooks.StatusSettingConfirmSerializer"}
    ):
        (error,) = checks.check_host_extensions()
    assert error.id == "django_orders.E013"
    assert "StatusSettingConfirmSerializer.state writes to 'status'" in error.msg


def test_e002_covers_each_rule_of_the_list() -> None:
    with override_settings(DJANGO_ORDERS={"ORDER_RULES": ["tests.hooks.no_such_rule"]}):
        (error,) = checks.check_settings()
    assert error.id == "django_orders.E002"
    assert "ORDER_RULES" in error.msg


@pytest.mark.parametrize("label", ["no_dot", "nowhere.Order"])
def test_a_swap_setting_naming_no_model_is_improperly_configured(label: str) -> None:
    """get_order_model() says what is wrong; the system check leaves it to Django's own
    models.E001 / models.E002 (reported for a swappable model)."""
    from django.core.exceptions import ImproperlyConfigured

    from django_orders.models import get_order_model

    with override_settings(DJANGO_ORDERS_ORDER_MODEL=label):
        with pytest.raises(ImproperlyConfigured, match="DJANGO_ORDERS_ORDER_MODEL"):
            get_order_model()
        assert checks.check_host_extensions() == []
    assert get_order_model()._meta.label == "django_orders.Order"


# The checks read settings.DATABASES only, never a connection: overriding it is safe here.
_OVERRIDING_DATABASES = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@_OVERRIDING_DATABASES
@pytest.mark.parametrize("replicas", ["replica", ["nowhere"], ["default"], [1], {"replica": 1}])
def test_e020_read_replicas_not_a_list_of_replica_aliases(replicas: Any) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}, "replica": {}}
    with override_settings(DJANGO_ORDERS={"READ_REPLICAS": replicas}, DATABASES=databases):
        assert ids(checks.check_read_replicas()) == ["django_orders.E020"]


@_OVERRIDING_DATABASES
@pytest.mark.parametrize(
    ("routers", "expected"),
    [
        ([], ["django_orders.E021"]),
        (["django_orders.routers.ReplicaRouter"], []),
        ([ReplicaRouter()], []),
    ],
)
def test_e021_read_replicas_without_the_router(routers: list, expected: list[str]) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}, "replica": {}}
    with override_settings(
        DJANGO_ORDERS={"READ_REPLICAS": ["replica"]}, DATABASES=databases, DATABASE_ROUTERS=routers
    ):
        assert ids(checks.check_read_replicas()) == expected


class HostRouter:
    """A host's router that has an opinion on every read."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "default"


@_OVERRIDING_DATABASES
@pytest.mark.parametrize(
    ("routers", "expected"),
    [
        ([HostRouter(), ReplicaRouter()], ["django_orders.W004"]),
        ([ReplicaRouter(), HostRouter()], []),
    ],
)
def test_w004_replica_router_behind_another_router(routers: list, expected: list[str]) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}, "replica": {}}
    with override_settings(
        DJANGO_ORDERS={"READ_REPLICAS": ["replica"]}, DATABASES=databases, DATABASE_ROUTERS=routers
    ):
        assert ids(checks.check_read_replicas()) == expected


@_OVERRIDING_DATABASES
@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("orders primary", ["django_orders.E023"]),
        ("orders;primary", ["django_orders.E023"]),
        ("", ["django_orders.E023"]),
        (7, ["django_orders.E023"]),
        ("orders_read-primary.v2", []),
    ],
)
def test_e023_read_your_writes_cookie_name(cookie: Any, expected: list[str]) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}, "replica": {}}
    with override_settings(
        DJANGO_ORDERS={"READ_REPLICAS": ["replica"], "READ_YOUR_WRITES_COOKIE": cookie},
        DATABASES=databases,
        DATABASE_ROUTERS=["django_orders.routers.ReplicaRouter"],
    ):
        assert ids(checks.check_read_replicas()) == expected


def test_no_replicas_no_router_needed() -> None:
    assert checks.check_read_replicas() == []


@_OVERRIDING_DATABASES
@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("django.db.backends.sqlite3", ["django_orders.E022"]),
        ("django.db.backends.postgresql", []),
        ("django.contrib.gis.db.backends.postgis", []),
    ],
)
def test_e022_row_level_security_needs_postgresql(engine: str, expected: list[str]) -> None:
    with override_settings(
        DJANGO_ORDERS={"ROW_LEVEL_SECURITY": True}, DATABASES={"default": {"ENGINE": engine}}
    ):
        assert ids(checks.check_row_level_security()) == expected


def test_no_row_level_security_no_check() -> None:
    assert checks.check_row_level_security() == []


@_OVERRIDING_DATABASES
def test_the_replica_and_security_checks_run_with_a_plain_manage_py_check() -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
    with override_settings(
        DJANGO_ORDERS={"READ_REPLICAS": ["nowhere"], "ROW_LEVEL_SECURITY": True},
        DATABASES=databases,
    ):
        found = ids(run_checks())
    assert "django_orders.E020" in found
    assert "django_orders.E022" in found
