"""Real concurrency: parallel HTTP requests against a live server, each served by its own
thread and database connection (docs/api/create-order.md: "never a second order";
docs/api/confirm-order.md: "exactly one succeeds"). Threads start together on a barrier;
nothing waits on a sleep."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from django_orders import services, sql
from django_orders.models import IdempotencyKey, Order, OutboxEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TENANT = {"X-Tenant-Id": "shop-1"}


@pytest.fixture
def live_url(live_port: int) -> str:
    """The live server (tests/conftest.py): one thread and one database connection per
    request, as under a real multi-threaded server."""
    return f"http://127.0.0.1:{live_port}"


def run_together(count: int, request: Callable[[httpx.Client], httpx.Response]) -> list[Any]:
    """Send ``count`` requests at once, one thread and one connection each."""
    barrier = threading.Barrier(count)

    def one() -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return request(client)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one) for _ in range(count)]
        return [future.result() for future in futures]


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(50, marks=pytest.mark.postgres, id="50-postgres"),
        pytest.param(8, id="8-any-db"),
    ],
)
def test_concurrent_creates_with_one_key_make_exactly_one_order(live_url: str, count: int) -> None:
    url = f"{live_url}/orders"
    headers = {**TENANT, "Idempotency-Key": f"one-key-{count}"}

    responses = run_together(
        count, lambda client: client.post(url, json={"totalCents": 100}, headers=headers)
    )

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    order = Order.objects.get()
    for response in responses:
        if response.status_code == 201:
            assert response.json()["id"] == str(order.id)
            assert response.headers["ETag"] == '"1"'
        else:
            assert response.json()["code"] == "idempotency_key_in_use"
            assert response.headers["Retry-After"]
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == statuses[201] - 1
    assert OutboxEvent.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.postgres
def test_50_concurrent_creates_with_distinct_keys_make_50_orders(live_url: str) -> None:
    url = f"{live_url}/orders"
    keys = iter(range(50))
    lock = threading.Lock()

    def create(client: httpx.Client) -> httpx.Response:
        with lock:
            key = f"distinct-{next(keys)}"
        return client.post(url, json={}, headers={**TENANT, "Idempotency-Key": key})

    responses = run_together(50, create)

    assert [response.status_code for response in responses] == [201] * 50
    assert len({response.json()["id"] for response in responses}) == 50
    assert Order.objects.count() == 50


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(20, marks=pytest.mark.postgres, id="20-postgres"),
        pytest.param(8, id="8-any-db"),
    ],
)
def test_concurrent_confirms_with_one_if_match_exactly_one_succeeds(
    live_url: str, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = services.create_order("shop-1")
    url = f"{live_url}/orders/{order.id}/confirm"
    headers = {**TENANT, "If-Match": '"1"'}
    conditional = count_conditional_updates(monkeypatch)

    responses = run_together(
        count, lambda client: client.patch(url, json={"totalCents": 5}, headers=headers)
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 412: count - 1}, statuses
    for response in responses:
        if response.status_code == 412:
            assert response.json()["currentVersion"] == 2
            assert response.headers["ETag"] == '"2"'
    order.refresh_from_db()
    assert order.version == 2
    assert OutboxEvent.objects.filter(type="order.confirmed").count() == 1
    if connection.vendor == "postgresql":
        # Every request tried the one conditional statement (docs/benchmarks.md, Finding
        # 16); the database let one change the row, the others found it changed.
        assert conditional == Counter({True: 1, False: count - 1}), conditional


@pytest.mark.postgres
def test_concurrent_closes_with_one_if_match_close_once(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = services.create_order("shop-1")
    from django.db import transaction

    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=1)
    url = f"{live_url}/orders/{order.id}/close"
    conditional = count_conditional_updates(monkeypatch)

    responses = run_together(
        10, lambda client: client.post(url, headers={**TENANT, "If-Match": '"2"'})
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 412: 9}, statuses
    assert conditional == Counter({True: 1, False: 9}), conditional
    assert OutboxEvent.objects.filter(type="order.closed").count() == 1
    assert Order.objects.get(pk=order.pk).version == 3


def count_conditional_updates(monkeypatch: pytest.MonkeyPatch) -> Counter[bool]:
    """Whether each conditional transition statement (``sql.update_if_current``) the live
    server's threads run changes the order, counted."""
    counts: Counter[bool] = Counter()
    lock = threading.Lock()
    update_if_current = sql.update_if_current

    def counted(*args: Any, **kwargs: Any) -> Any:
        changed = update_if_current(*args, **kwargs)
        with lock:
            counts[changed is not None] += 1
        return changed

    monkeypatch.setattr(sql, "update_if_current", counted)
    return counts


@pytest.mark.postgres
def test_concurrent_closes_close_once(live_url: str) -> None:
    order = services.create_order("shop-1")
    from django.db import transaction

    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=1)
    url = f"{live_url}/orders/{order.id}/close"

    responses = run_together(
        10, lambda client: client.post(url, headers={**TENANT, "If-Match": "*"})
    )

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 409: 9}, statuses
    assert OutboxEvent.objects.filter(type="order.closed").count() == 1


def test_concurrent_requests_with_one_key_and_different_bodies_make_one_order(
    live_url: str,
) -> None:
    url = f"{live_url}/orders"
    totals = iter(range(12))
    lock = threading.Lock()

    def create(client: httpx.Client) -> httpx.Response:
        with lock:
            total = next(totals)
        headers = {**TENANT, "Idempotency-Key": "one-key-many-bodies"}
        return client.post(url, json={"totalCents": total}, headers=headers)

    responses = run_together(12, create)

    statuses = Counter(response.status_code for response in responses)
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {201, 409, 422}, statuses
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.count() == 1


def test_concurrent_requests_with_an_expired_key_make_exactly_one_new_order(
    live_url: str,
) -> None:
    url = f"{live_url}/orders"
    headers = {**TENANT, "Idempotency-Key": "expired-key"}
    first = httpx.post(url, json={}, headers=headers)
    assert first.status_code == 201
    IdempotencyKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    responses = run_together(10, lambda client: client.post(url, json={}, headers=headers))

    assert {response.status_code for response in responses} <= {201, 409}
    fresh = [
        r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(fresh) == 1
    new_id = fresh[0].json()["id"]
    assert new_id != first.json()["id"]
    for response in responses:
        if response.status_code == 201:
            assert response.json()["id"] == new_id
    assert Order.objects.count() == 2
    assert OutboxEvent.objects.count() == 2
    assert IdempotencyKey.objects.get().expires_at > timezone.now()
