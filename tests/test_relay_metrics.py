"""docs/operations.md, "Metrics": the relay's metrics hook (what it is told, and when), its
choice by the settings, and the Prometheus metrics of real relay processes scraped while
they publish, matched against what the receiver got."""

from __future__ import annotations

import datetime as dt
import re
import signal
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_orders import services
from django_orders.models import OutboxEvent
from django_orders.outbox.batches import BatchReport
from django_orders.outbox.metrics import Backlog, RelayMetrics
from django_orders.outbox.prometheus import PrometheusMetrics
from django_orders.outbox.relay import Relay, metrics_from_settings
from django_orders.publishers.rabbitmq import RabbitMQPublisher
from django_orders.publishers.redis_streams import RedisStreamPublisher
from django_orders.publishers.webhook import WebhookPublisher
from tests.outbox_rows import bulk_events
from tests.receiver import Receiver
from tests.relay_publishers import FailingPublisher, RecordingPublisher
from tests.relay_runs import RelayProcess, relay_env
from tests.waiting import wait_until


class RecordingMetrics(RelayMetrics):
    """Remembers every call (the hook's contract, seen from a subclass)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def relay_started(self, relay: Relay) -> None:
        self.calls.append(("started", relay.id))

    def batch_finished(self, report: BatchReport, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("batch", report))

    def events_published(
        self, created_at: Sequence[dt.datetime], acknowledged_at: dt.datetime
    ) -> None:
        self.calls.append(
            ("latencies", [(acknowledged_at - c).total_seconds() for c in created_at])
        )

    def events_failed(self, reason: str, count: int) -> None:
        self.calls.append(("failed", (reason, count)))

    def backlog_measured(self, backlog: Backlog) -> None:
        self.calls.append(("backlog", backlog))

    def relay_stopped(self) -> None:
        self.calls.append(("stopped", None))

    def of(self, kind: str) -> list[Any]:
        return [value for name, value in list(self.calls) if name == kind]


@pytest.mark.django_db(transaction=True)
def test_the_hook_is_told_what_each_batch_did() -> None:
    for _ in range(3):
        services.create_order("shop-1")
    metrics = RecordingMetrics()
    relay = Relay(RecordingPublisher(), listen=False, metrics=metrics)
    assert relay.run(once=True)

    assert metrics.calls[0] == ("started", relay.id)
    assert metrics.calls[-1] == ("stopped", None)
    (report,) = metrics.of("batch")
    assert (report.claimed, report.published, report.failed, report.dead) == (3, 3, 0, 0)
    (latencies,) = metrics.of("latencies")
    assert len(latencies) == 3
    assert all(0 <= seconds < 60 for seconds in latencies)
    assert metrics.of("failed") == []


# Nothing listens on port 9 (discard) of loopback: connections are refused.
CLOSED_PORT = 9


def _kafka(**options: Any) -> Any:
    pytest.importorskip("confluent_kafka")
    from django_orders.publishers.kafka import KafkaPublisher

    return KafkaPublisher(**options)


def _nats(**options: Any) -> Any:
    pytest.importorskip("nats")
    from django_orders.publishers.nats_jetstream import NatsJetStreamPublisher

    return NatsJetStreamPublisher(**options)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("make_publisher", "reason", "dead"),
    [
        (FailingPublisher, "transient", 0),
        (lambda: FailingPublisher(permanent=True), "permanent", 2),
        (
            lambda: WebhookPublisher(
                url=f"http://127.0.0.1:{CLOSED_PORT}/", secret="whsec_c2VjcmV0"
            ),
            "unavailable",
            0,
        ),
        (
            lambda: RedisStreamPublisher(url=f"redis://127.0.0.1:{CLOSED_PORT}/0", timeout=2),
            "unavailable",
            0,
        ),
        (
            lambda: RabbitMQPublisher(url=f"amqp://guest:guest@127.0.0.1:{CLOSED_PORT}/%2F"),
            "unavailable",
            0,
        ),
        (
            lambda: _kafka(bootstrap_servers=f"127.0.0.1:{CLOSED_PORT}", timeout=1),
            "unavailable",
            0,
        ),
        (
            lambda: _nats(servers=f"nats://127.0.0.1:{CLOSED_PORT}", timeout=2),
            "unavailable",
            0,
        ),
    ],
    ids=[
        "transient",
        "permanent",
        "webhook-unavailable",
        "redis-unavailable",
        "amqp-unavailable",
        "kafka-unavailable",
        "nats-unavailable",
    ],
)
def test_failures_are_counted_by_reason(make_publisher: Any, reason: str, dead: int) -> None:
    services.create_order("shop-1")
    services.create_order("shop-2")
    metrics = RecordingMetrics()
    assert not Relay(make_publisher(), listen=False, metrics=metrics).run(once=True)
    assert metrics.of("failed") == [(reason, 2)]
    (report,) = metrics.of("batch")
    assert (report.failed, report.dead, report.published) == (2, dead, 0)
    assert metrics.of("latencies") == []


@pytest.mark.django_db(transaction=True)
def test_a_webhook_past_its_timeout_counts_as_timeout(receiver: Receiver) -> None:
    services.create_order("shop-1")
    receiver.delay = 2.0
    metrics = RecordingMetrics()
    publisher = WebhookPublisher(url=receiver.url, secret="whsec_c2VjcmV0", timeout=0.3)
    assert not Relay(publisher, listen=False, metrics=metrics).run(once=True)
    assert metrics.of("failed") == [("timeout", 1)]


@pytest.mark.django_db(transaction=True)
def test_the_backlog_is_measured_on_the_heartbeat_thread() -> None:
    services.create_order("shop-1")
    OutboxEvent.objects.update(status="dead")
    services.create_order("shop-2")

    metrics = RecordingMetrics()
    relay = Relay(FailingPublisher(), listen=False, metrics=metrics, poll_interval=0.05)
    with override_settings(DJANGO_ORDERS={"OUTBOX_METRICS_INTERVAL": 0.1}):
        runner = threading.Thread(target=lambda: (relay.run(), connection.close()))
        runner.start()
        try:
            wait_until(lambda: len(metrics.of("backlog")) >= 2, 20, "two measurements")
        finally:
            relay.stop()
            runner.join(20)
    backlog = metrics.of("backlog")[0]
    assert backlog.dead == 1
    assert backlog.live_relays == 1
    assert backlog.pending + backlog.held_back == 1
    assert backlog.oldest_pending_age is not None
    assert backlog.oldest_pending_age >= 0


def test_the_base_class_measures_no_backlog() -> None:
    from django_orders.outbox.metrics import measures_backlog

    assert not measures_backlog(RelayMetrics())
    assert measures_backlog(RecordingMetrics())
    assert measures_backlog(PrometheusMetrics())


def test_metrics_come_from_the_settings() -> None:
    assert type(metrics_from_settings()) is RelayMetrics
    path = f"{__name__}.RecordingMetrics"
    with override_settings(DJANGO_ORDERS={"OUTBOX_METRICS": path}):
        assert type(metrics_from_settings()) is RecordingMetrics
        with pytest.raises(ImproperlyConfigured, match="one of them"):
            metrics_from_settings(port=0)
    with override_settings(DJANGO_ORDERS={"OUTBOX_METRICS_PORT": 0}):
        chosen = metrics_from_settings()
        assert isinstance(chosen, PrometheusMetrics)
        assert (chosen.port, chosen.address) == (0, "0.0.0.0")
    assert metrics_from_settings(port=9100, address="127.0.0.1").address == "127.0.0.1"
    not_metrics = {"OUTBOX_METRICS": "django_orders.models.Order"}
    with (
        override_settings(DJANGO_ORDERS=not_metrics),
        pytest.raises(ImproperlyConfigured, match="subclass of"),
    ):
        metrics_from_settings()


@pytest.mark.django_db
def test_a_taken_metrics_port_is_a_clear_command_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot serve the relay's metrics on .*:{port}"):
            call_command(
                "orders_outbox_relay",
                "--once",
                "--no-listen",
                "--metrics-port",
                str(port),
                "--metrics-address",
                "127.0.0.1",
            )


# -- Prometheus, scraped from real relay processes ----------------------------------------


def metrics_port(relay: RelayProcess) -> int:
    found = wait_until(
        lambda: re.search(
            r"Serving Prometheus metrics on http://[^:]+:(\d+)/metrics", relay.output()
        ),
        20,
        "the metrics line",
    )
    return int(found.group(1))


def scrape(port: int) -> dict[str, float]:
    """Every sample of ``/metrics``, by name and labels: ``name{label="v"}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def total(scrapes: list[dict[str, float]], name: str) -> float:
    return sum(samples.get(name, 0.0) for samples in scrapes)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_prometheus_counts_match_the_receivers(receiver: Receiver, log_dir: Path) -> None:
    count = 2 if connection.vendor == "postgresql" else 1  # SQLite: one relay at a time
    bulk_events(200, versions=1)
    receiver.status = 503  # refuses the first attempts: failures by reason
    receiver.delay = 0.005  # and then takes long enough to be scraped mid-run
    env = relay_env(
        receiver, OUTBOX_POLL_INTERVAL=0.1, OUTBOX_BACKOFF_MAX=0.5, OUTBOX_METRICS_INTERVAL=0.2
    )
    args = ("--batch-size", "20", "--metrics-port", "0", "--metrics-address", "127.0.0.1")
    processes = [RelayProcess(log_dir / f"relay-{i}.log", env, *args) for i in range(count)]
    try:
        ports = [metrics_port(relay) for relay in processes]
        assert len(set(ports)) == count  # each relay its own port
        wait_until(lambda: receiver.refused >= 20, 30, "refused attempts")
        receiver.status = 200

        wait_until(lambda: receiver.count() >= 40, 60, "deliveries under way")
        mid = [scrape(port) for port in ports]
        delivered = receiver.count()
        published = total(mid, "orders_outbox_events_published_total")
        # Written back only after the receiver answered: never more than it got.
        assert 0 < published <= delivered < 200, (published, delivered)

        wait_until(
            lambda: not OutboxEvent.objects.exclude(status="published").exists(), 90, "all out"
        )
        wait_until(  # the backlog gauges catch up within OUTBOX_METRICS_INTERVAL
            lambda: all(scrape(p)["orders_outbox_pending_events"] == 0 for p in ports),
            20,
            "an empty backlog measured",
        )
        end = [scrape(port) for port in ports]
    finally:
        for relay in processes:
            if relay.proc.poll() is None:
                relay.signal(signal.SIGTERM)
        for relay in processes:
            assert relay.wait(20) == 0, relay.output()

    received = receiver.count()
    assert received >= 200
    assert total(end, "orders_outbox_events_published_total") == received
    assert total(end, "orders_outbox_publish_latency_seconds_count") == received
    assert total(end, 'orders_outbox_events_failed_total{reason="transient"}') == receiver.refused
    assert total(end, "orders_outbox_events_dead_total") == 0
    assert total(end, "orders_outbox_batch_duration_seconds_count") >= 200 / 20
    for samples in end:
        assert samples["orders_outbox_live_relays"] == count
        assert samples["orders_outbox_dead_events"] == 0
        assert samples["orders_outbox_oldest_pending_age_seconds"] == 0
        assert samples["orders_outbox_batches_in_flight"] == 0
        assert samples["orders_outbox_backlog_measured_timestamp_seconds"] > 0
