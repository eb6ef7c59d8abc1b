"""The publisher interface (docs/guide/publishers.md): what the relay relies on, and lazy
drivers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import serialize
from django_orders.publishers import LoggingPublisher, NotSent, Publisher, PublishError
from django_orders.publishers.base import check_publisher
from tests.cloudevent_samples import sample_batch, sample_cloudevent


def test_importing_the_publishers_needs_no_driver_and_no_app_registry() -> None:
    code = (
        "import sys\n"
        "for name in ('pika', 'redis', 'httpx', 'confluent_kafka', 'nats'):\n"
        "    sys.modules[name] = None\n"
        "from django_orders.publishers import (KafkaPublisher, LoggingPublisher,\n"
        "    NatsJetStreamPublisher, RabbitMQPublisher, RedisStreamPublisher, WebhookPublisher)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import django_orders.publishers as publishers

    with pytest.raises(AttributeError):
        publishers.PulsarPublisher  # noqa: B018


def test_publish_error_carries_the_relay_hints() -> None:
    error = PublishError("busy", retry_after=3.0)
    assert (str(error), error.permanent, error.retry_after) == ("busy", False, 3.0)
    assert PublishError("gone", permanent=True).permanent


class HalfRefusing(Publisher):
    """A publisher written the simple way: only ``publish`` for one event."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.seen.append(event["id"])
        if len(self.seen) % 2 == 0:
            raise PublishError("every second one fails")


def test_the_default_publish_batch_calls_publish_per_event_in_order() -> None:
    events = sample_batch(4)
    publisher = HalfRefusing()

    results = publisher.publish_batch(events)

    assert publisher.seen == [e["id"] for e in events]
    assert [r is None for r in results] == [True, False, True, False]


class BatchOnly(Publisher):
    """A publisher that sends whole batches and writes no ``publish``."""

    def __init__(self, refuse: bool) -> None:
        super().__init__()
        self.refuse = refuse
        self.batches: list[list[str]] = []

    def publish_batch(self, events: Any) -> list[PublishError | None]:
        self.batches.append([e["id"] for e in events])
        return [PublishError("refused") if self.refuse else None for _ in events]


def test_publish_of_one_event_is_a_batch_of_one_for_a_batch_publisher() -> None:
    event = sample_cloudevent()
    accepting, refusing = BatchOnly(refuse=False), BatchOnly(refuse=True)

    accepting.publish(event)
    with pytest.raises(PublishError, match="refused"):
        refusing.publish(event)

    assert accepting.batches == refusing.batches == [[event["id"]]]


def test_publish_of_a_publisher_with_no_way_of_sending_says_so() -> None:
    class Mute(Publisher):
        pass

    with pytest.raises(NotImplementedError, match="no way of sending"):
        Mute().publish(sample_cloudevent())


def test_a_publisher_without_options_refuses_options() -> None:
    with pytest.raises(TypeError, match="takes no options"):
        LoggingPublisher(url="x")


def test_the_logging_publisher_logs_one_json_line_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = sample_batch(3)
    with caplog.at_level(logging.INFO, logger="django_orders.events"):
        assert LoggingPublisher().publish_batch(events) == [None, None, None]

    lines = [r.getMessage() for r in caplog.records if r.name == "django_orders.events"]
    assert [json.loads(line) for line in lines] == events
    assert lines[0].encode() == serialize(events[0])
    assert all("\n" not in line for line in lines)


def test_the_logging_publisher_has_a_timeout_and_closes() -> None:
    publisher = LoggingPublisher()
    assert publisher.timeout > 0
    publisher.close()
    assert sample_cloudevent()["specversion"] == "1.0"


class Crashing(Publisher):
    """``publish`` raises something that is not a PublishError on the second event."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.seen.append(event["id"])
        if len(self.seen) == 2:
            raise ConnectionResetError("driver bug")


def test_an_unexpected_exception_keeps_what_was_sent_and_tries_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = sample_batch(4)
    publisher = Crashing()

    with caplog.at_level(logging.ERROR, logger="django_orders.publishers"):
        first, second, third, fourth = publisher.publish_batch(events)

    # The first went out (no duplicate on retry); the rest are retryable failures.
    assert first is None
    assert isinstance(second, PublishError)
    assert not second.permanent
    assert "ConnectionResetError: driver bug" in str(second)
    assert all(isinstance(r, PublishError) and not r.permanent for r in (third, fourth))
    assert "not sent" in str(third)
    assert publisher.seen == [events[0]["id"], events[1]["id"]]
    assert "Crashing.publish raised" in caplog.text


def test_request_stop_answers_the_unsent_events_with_not_sent() -> None:
    events = sample_batch(3)

    class StopsAfterOne(HalfRefusing):
        def publish(self, event: dict[str, Any]) -> None:
            super().publish(event)
            self.request_stop()  # as a signal arriving while this event was in flight

    publisher = StopsAfterOne()
    results = publisher.publish_batch(events)

    assert results[0] is None
    assert [type(r) for r in results[1:]] == [NotSent, NotSent]
    assert publisher.seen == [events[0]["id"]]
    assert not Publisher.stop_requested  # a flag of the instance, not of the class


# -- the shipped publishers' option defaults (docs/reference/settings.md) --------------------------


def test_the_webhook_timeout_defaults_to_10_seconds() -> None:
    from django_orders.publishers import WebhookPublisher

    publisher = WebhookPublisher(url="http://127.0.0.1:9/hook", secret="s")
    try:
        assert publisher.timeout == 10.0
    finally:
        publisher.close()


def test_the_broker_publishers_default_to_orders_events() -> None:
    """Exchange and stream default to ``orders.events`` (creating either connects to
    nothing: the connection is made on the first publish)."""
    pytest.importorskip("pika")
    pytest.importorskip("redis")
    from django_orders.publishers import RabbitMQPublisher, RedisStreamPublisher

    rabbitmq, redis_streams = RabbitMQPublisher(), RedisStreamPublisher()
    try:
        assert (rabbitmq.exchange, rabbitmq.timeout) == ("orders.events", 10.0)
        assert (redis_streams.stream, redis_streams.maxlen) == ("orders.events", None)
    finally:
        rabbitmq.close()
        redis_streams.close()


def test_kafka_and_nats_default_to_orders_events() -> None:
    """Creating either connects to nothing: librdkafka connects in the background, the
    NATS publisher on the first batch."""
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("nats")
    from django_orders.publishers import KafkaPublisher, NatsJetStreamPublisher

    kafka, nats = KafkaPublisher(), NatsJetStreamPublisher()
    try:
        assert (kafka.topic, kafka.mode, kafka.timeout) == ("orders.events", "structured", 10.0)
        assert kafka.max_batches_in_flight == 2
        assert (nats.subject, nats.stream, nats.timeout) == ("orders.{type}", None, 10.0)
        check_publisher(kafka)
        check_publisher(nats)
    finally:
        kafka.close()
        nats.close()


# -- what the relay checks when it starts (check_publisher) ------------------------------


class _Sends(Publisher):
    def publish(self, event: dict[str, Any]) -> None:
        pass


class _Duck:
    """Looks like a publisher to a glance (it can publish a batch), but is not one."""

    def publish_batch(self, events: Any) -> list[None]:
        return [None for _ in events]


class _Mute(Publisher):
    """Subclasses the base but implements no way of sending."""


@pytest.mark.parametrize(
    ("publisher", "says"),
    [
        (
            _Duck(),
            "_Duck is not a publisher: subclass django_orders.publishers.Publisher "
            "(it lacks publish, start_batch, close, request_stop, timeout, max_batches_in_flight)",
        ),
        (object(), "object is not a publisher"),
        (_Mute(), "_Mute implements none of publish(), publish_batch() or start_batch()"),
    ],
)
def test_a_misfit_is_refused_naming_what_it_lacks(publisher: object, says: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        check_publisher(publisher)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", float("inf")),
        ("timeout", "10"),
        ("timeout", True),
        ("max_batches_in_flight", 0),
        ("max_batches_in_flight", 1.5),
        ("max_batches_in_flight", True),
    ],
)
def test_declared_capabilities_are_checked(attribute: str, value: Any) -> None:
    publisher = _Sends()
    setattr(publisher, attribute, value)
    with pytest.raises(ImproperlyConfigured, match=f"_Sends.{attribute} must be"):
        check_publisher(publisher)


@pytest.mark.parametrize("method", ["publish", "publish_batch", "start_batch"])
def test_any_one_way_of_sending_is_enough(method: str) -> None:
    publisher = type("One", (Publisher,), {method: lambda self, *args: None})()
    check_publisher(publisher)  # no error


@pytest.mark.django_db
def test_a_relay_refuses_a_misfit_when_it_is_made() -> None:
    from django_orders.outbox.relay import Relay

    with pytest.raises(ImproperlyConfigured, match="_Duck is not a publisher"):
        Relay(_Duck())  # type: ignore[arg-type]
