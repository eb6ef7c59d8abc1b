"""Issue 3 §6: ``order_created`` / ``order_confirmed`` / ``order_closed`` are sent after
commit, never for a change that rolled back. These tests commit for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models.signals import post_save
from django.dispatch import Signal

from django_orders import signals
from django_orders.models import Order, OutboxEvent
from tests.orders_api import OrdersClient

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """Receives the three signals and notes what it saw, and whether it was committed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, bool]] = []

    def receiver(self, name: str) -> Any:
        def receive(sender: Any, order: Order, **kwargs: Any) -> None:
            assert sender is Order
            # Sent after commit: the order is visible as sent, from a fresh query.
            committed = Order.objects.filter(pk=order.pk, version=order.version).exists()
            self.calls.append((name, str(order.id), order.version, committed))

        return receive


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    connected: list[tuple[Signal, Any]] = []
    for name in ("order_created", "order_confirmed", "order_closed"):
        signal = getattr(signals, name)
        receiver = recorder.receiver(name)
        signal.connect(receiver)
        connected.append((signal, receiver))
    yield recorder
    for signal, receiver in connected:
        signal.disconnect(receiver)


def test_each_transition_sends_its_signal_after_commit(recorder: Recorder) -> None:
    api = OrdersClient()
    order_id = api.create({}).json()["id"]
    api.confirm(order_id, {"totalCents": 3})
    api.close_order(order_id)

    assert recorder.calls == [
        ("order_created", order_id, 1, True),
        ("order_confirmed", order_id, 2, True),
        ("order_closed", order_id, 3, True),
    ]


def test_a_replay_sends_nothing(recorder: Recorder) -> None:
    api = OrdersClient()
    api.create({}, key="signal-replay")
    api.create({}, key="signal-replay")
    assert [call[0] for call in recorder.calls] == ["order_created"]


def test_a_refused_or_failed_request_sends_nothing(recorder: Recorder) -> None:
    api = OrdersClient()
    order_id = api.create({}).json()["id"]
    recorder.calls.clear()

    assert api.confirm(order_id, {"totalCents": 3}, if_match='"7"').status_code == 412
    assert api.close_order(order_id, if_match='"1"').status_code == 409

    def explode(**kwargs: Any) -> None:
        raise RuntimeError("after the order was written")

    post_save.connect(explode, sender=OutboxEvent)
    try:
        with pytest.raises(RuntimeError):
            api.create({})
    finally:
        post_save.disconnect(explode, sender=OutboxEvent)

    assert recorder.calls == []
    assert Order.objects.count() == 1
