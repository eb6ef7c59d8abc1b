"""docs/guide/replicas.md: ``ReplicaRouter`` and the read-your-writes window, without a
replica (tests/replica/ runs them against a real streaming replica)."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from django_orders.models import Order
from django_orders.routers import ReplicaRouter, choose_replica, remember_write, replica_reads
from tests.orders_api import OrdersClient

COOKIE = "django_orders_read_primary"
REPLICAS = override_settings(DJANGO_ORDERS={"READ_REPLICAS": ["replica"]})


def test_the_router_routes_only_the_reads_inside_replica_reads() -> None:
    router = ReplicaRouter()
    assert router.db_for_read(Order) is None
    with replica_reads("replica"):
        assert router.db_for_read(Order) == "replica"
        assert router.db_for_write(Order) is None
        with replica_reads(None):  # no-op: still the enclosing block's replica
            assert router.db_for_read(Order) == "replica"
    assert router.db_for_read(Order) is None


def test_the_block_ends_on_an_exception() -> None:
    with pytest.raises(RuntimeError), replica_reads("replica"):
        raise RuntimeError
    assert ReplicaRouter().db_for_read(Order) is None


@REPLICAS
def test_migrations_never_run_on_a_replica() -> None:
    router = ReplicaRouter()
    assert router.allow_migrate("replica", "django_orders") is False
    assert router.allow_migrate("default", "django_orders") is None
    assert router.allow_relation(Order(), Order()) is None


@pytest.mark.django_db
def test_without_replicas_the_primary_reads_and_no_cookie_is_set() -> None:
    request = RequestFactory().get("/orders")
    assert choose_replica(request) is None
    response = OrdersClient().create({})
    assert response.status_code == 201
    assert COOKIE not in response.cookies


@REPLICAS
def test_a_replica_unless_the_client_wrote_within_the_window() -> None:
    factory = RequestFactory()
    assert choose_replica(factory.get("/orders")) == "replica"

    written = factory.post("/orders")
    response = HttpResponse(status=201)
    remember_write(written, response)
    cookie = response.cookies[COOKIE]
    assert cookie["max-age"] == 5
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"

    reader = factory.get("/orders")
    reader.COOKIES[COOKIE] = cookie.value
    assert choose_replica(reader) is None
    forged = factory.get("/orders")
    forged.COOKIES[COOKIE] = "1"
    assert choose_replica(forged) == "replica"


@REPLICAS
@pytest.mark.django_db
def test_the_package_views_start_the_window_on_2xx_writes_only() -> None:
    api = OrdersClient()
    created = api.create({})
    assert COOKIE in created.cookies
    refused = OrdersClient().create({"totalCents": -1})
    assert refused.status_code == 400
    assert COOKIE not in refused.cookies
    read = OrdersClient().call("GET", "/orders")
    assert read.status_code == 200
    assert COOKIE not in read.cookies


@override_settings(DJANGO_ORDERS={"READ_REPLICAS": ["replica-a", "replica-b"]})
def test_several_replicas_share_the_reads() -> None:
    factory = RequestFactory()
    chosen = {choose_replica(factory.get("/orders")) for _ in range(200)}
    assert chosen == {"replica-a", "replica-b"}  # at random: 2**-199 to miss one
