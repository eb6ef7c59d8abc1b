"""With the order model swapped for the example project's ``shop.Order``: the admin, the
signals, the relay, the system checks, the migrations and the OpenAPI description all work
with it (docs/guide/extending.md)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection, migrations, models
from django.db.migrations.loader import MigrationLoader
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from shop.models import Customer, Order

from django_orders import services, signals
from tests.receiver import Receiver
from tests.relay_runs import relay_once

pytestmark = pytest.mark.django_db


def test_the_admin_lists_the_hosts_orders_read_only_with_its_columns(customer: Customer) -> None:
    order = services.create_order("shop-1", customer=customer, channel="phone")
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    page = client.get("/admin/shop/order/", {"channel__exact": "phone"})
    assert page.status_code == 200
    assert [o.pk for o in page.context["cl"].result_list] == [order.pk]
    assert customer.name in page.text  # the host's own column
    change = client.get(f"/admin/shop/order/{order.pk}/change/")
    assert change.status_code == 200
    assert 'name="channel"' not in change.text  # shown, not editable
    assert client.get("/admin/shop/order/add/").status_code == 403
    assert client.get("/admin/django_orders/order/").status_code == 404  # swapped out


@pytest.mark.django_db(transaction=True)
def test_signals_after_commit_carry_the_hosts_model() -> None:
    received: list[tuple[Any, Any]] = []

    def receive(sender: Any, order: Any, **kwargs: Any) -> None:
        received.append((sender, order.channel))

    signals.order_created.connect(receive)
    try:
        services.create_order("shop-1", channel="store")
    finally:
        signals.order_created.disconnect(receive)
    assert received == [(Order, "store")]


def test_the_relay_publishes_the_host_fields(customer: Customer) -> None:
    services.create_order("shop-1", customer=customer, channel="phone")
    with Receiver() as receiver:
        assert relay_once("tests.relay_publishers.ReceiverPublisher", url=receiver.url) == 0
    (event,) = receiver.received
    assert (event["data"]["customerId"], event["data"]["channel"]) == (customer.pk, "phone")


def test_the_configuration_passes_the_system_checks() -> None:
    messages = [m for m in run_checks() if m.id.startswith("django_orders.")]
    assert messages == []


def test_e010_an_order_model_that_is_not_an_abstract_order() -> None:
    with override_settings(DJANGO_ORDERS_ORDER_MODEL="shop.Customer"):
        ids = [m.id for m in run_checks() if m.id.startswith("django_orders.")]
    assert ids == ["django_orders.E010"]


def test_no_missing_migrations_for_the_package_or_the_host() -> None:
    out = StringIO()
    call_command("makemigrations", "django_orders", "shop", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)  # SQLite's schema editor needs no open transaction
def test_a_later_package_migration_on_the_order_model_leaves_the_hosts_alone() -> None:
    """Migration 0005 marks the order model swappable in the migration state: an operation
    of the package on ``django_orders.Order`` is then skipped, as Django skips
    ``auth.User``'s under ``AUTH_USER_MODEL``."""
    state = MigrationLoader(connection).project_state()
    assert state.apps.get_model("django_orders", "order")._meta.swapped == "shop.Order"
    operation = migrations.AddField("order", "later", models.IntegerField(default=0))
    new_state = state.clone()
    operation.state_forwards("django_orders", new_state)
    with CaptureQueriesContext(connection) as captured, connection.schema_editor() as editor:
        operation.database_forwards("django_orders", editor, state, new_state)
    assert [q["sql"] for q in captured.captured_queries if "ALTER" in q["sql"].upper()] == []


@pytest.fixture
def schema() -> dict[str, Any]:
    pytest.importorskip("drf_spectacular")
    from tests.openapi_conformance import generate

    return generate("tests.urls_prefixed")


def test_the_openapi_description_has_the_host_fields(schema: dict[str, Any]) -> None:
    """docs/guide/openapi.md: the host's serializers are the bodies and the filters, and
    the members its ``to_dict()`` adds are described by the model fields they render."""
    from tests.openapi_conformance import validate

    components = schema["components"]["schemas"]

    def body_of(path: str, method: str) -> dict[str, Any]:
        ref = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
        name = ref["schema"]["$ref"].rsplit("/", 1)[-1]
        assert components[name]["additionalProperties"] is False
        return components[name]["properties"]

    create = body_of("/api/v1/orders", "post")
    assert {"totalCents", "currency", "metadata", "customerId", "channel"} == set(create)
    assert create["customerId"]["type"] == ["integer", "null"]
    assert create["currency"]["pattern"] == "^[A-Z]{3}$"
    assert "customerId" in body_of("/api/v1/orders/{order_id}/confirm", "patch")

    document = components["Order"]
    assert {"customerId", "channel"} <= set(document["required"])
    assert document["properties"]["customerId"]["type"] == ["integer", "null"]
    assert document["example"]["channel"] == "web"  # a new order's
    validate(document, document["example"], schema)
    channel = document["properties"]["channel"]
    assert components[channel["$ref"].rsplit("/", 1)[-1]]["enum"] == ["web", "phone", "store"]

    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/orders"]["get"]["parameters"]}
    assert parameters["channel"]["in"] == "query"
    assert parameters["channel"]["schema"]["enum"] == ["web", "phone", "store"]
    assert parameters["status"]["schema"]["enum"] == ["draft", "confirmed", "closed"]
    # The credit-limit rule (ORDER_RULES) may refuse a create or a confirm.
    assert "422" in schema["paths"]["/api/v1/orders"]["post"]["responses"]


@pytest.mark.django_db
def test_a_real_order_of_the_host_validates_against_the_schema(schema: dict[str, Any]) -> None:
    from tests.openapi_conformance import Conformance

    conformance = Conformance(schema)
    with override_settings(ROOT_URLCONF="tests.urls_prefixed"):
        created = conformance.send(
            "orders_create",
            headers={"X-Tenant-Id": "shop-1", "Idempotency-Key": "swapped-openapi-1"},
            body={"channel": "phone", "totalCents": 5},
        )
        assert created.status_code == 201, created.content
        conformance.send("orders_list", headers={"X-Tenant-Id": "shop-1"})
        refused = conformance.send(
            "orders_create",
            headers={"X-Tenant-Id": "shop-1", "Idempotency-Key": "swapped-openapi-2"},
            body={"channel": "fax"},
        )
        assert refused.status_code == 400
