"""The relay's metrics for Prometheus (the ``prometheus`` extra: ``prometheus-client``).

``orders_outbox_relay --metrics-port PORT`` (or ``OUTBOX_METRICS_PORT``) serves them on
``http://ADDRESS:PORT/metrics`` while the relay runs. Each relay serves its own: several
relays on one host each take a port of their own (``0`` picks a free one; the relay logs
which). docs/operations.md says what each metric means and how to alert on them.

The metrics live in a registry of the relay's own, not the process-wide default one, so
two relays in one process (tests, an embedding host) never collide.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.outbox.metrics import Backlog, BatchReport, RelayMetrics, RunningRelay

logger = logging.getLogger("django_orders.relay")

PREFIX = "orders_outbox_"
#: Publish latency, commit to acknowledgement: from a few milliseconds (NOTIFY wakes the
#: relay) to the minutes a retried event may take.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: A batch's claim to its write-back.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class PrometheusMetrics(RelayMetrics):
    """Counts, histograms and gauges of one relay, served over HTTP while it runs."""

    def __init__(self, port: int = 0, address: str = "0.0.0.0") -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImproperlyConfigured(
                "Serving relay metrics needs the 'prometheus-client' package: install "
                "django-orders[prometheus]."
            ) from exc
        self._client = prometheus_client
        self.port = int(port)
        self.address = address
        self.registry = prometheus_client.CollectorRegistry()
        self._server: Any = None
        self._thread: Any = None
        metric: Any = self._metric
        self.published = metric("Counter", "events_published", "Events published.")
        self.failed = metric(
            "Counter", "events_failed", "Failed publish attempts, by reason.", ["reason"]
        )
        self.dead = metric("Counter", "events_dead", "Events parked as dead.")
        self.lost = metric(
            "Counter",
            "events_lost",
            "Outcomes not written: the lease had passed to another relay.",
        )
        self.latency = metric(
            "Histogram",
            "publish_latency_seconds",
            "From an event's commit to the publisher's acknowledgement.",
            buckets=LATENCY_BUCKETS,
        )
        self.batch_duration = metric(
            "Histogram",
            "batch_duration_seconds",
            "From a batch's claim to its write-back.",
            buckets=BATCH_BUCKETS,
        )
        self.in_flight = metric(
            "Gauge", "batches_in_flight", "Batches handed to the publisher, results not in yet."
        )
        self.pending = metric("Gauge", "pending_events", "Pending events (held-back ones aside).")
        self.held_back = metric(
            "Gauge", "held_back_events", "Pending events waiting behind a dead event."
        )
        self.dead_now = metric("Gauge", "dead_events", "Dead events in the outbox.")
        self.oldest = metric(
            "Gauge",
            "oldest_pending_age_seconds",
            "Age of the oldest pending event (held-back ones aside); 0 when none.",
        )
        self.live_relays = metric("Gauge", "live_relays", "Relays with a recent heartbeat.")
        self.backlog_at = metric(
            "Gauge", "backlog_measured_timestamp_seconds", "When the backlog gauges were measured."
        )

    def _metric(
        self, kind: str, name: str, documentation: str, labels: Sequence[str] = (), **kw: Any
    ) -> Any:
        cls = getattr(self._client, kind)
        return cls(PREFIX + name, documentation, labels, registry=self.registry, **kw)

    # -- the hook ---------------------------------------------------------------------------

    def relay_started(self, relay: RunningRelay) -> None:
        batches = relay.batches
        self.in_flight.set_function(lambda: batches.in_flight)
        try:
            self._server, self._thread = self._client.start_http_server(
                self.port, addr=self.address, registry=self.registry
            )
        except OSError as exc:  # the port is taken, the address not this host's
            raise ImproperlyConfigured(
                f"Cannot serve the relay's metrics on {self.address}:{self.port}: {exc}"
            ) from exc
        self.port = self._server.server_address[1]
        logger.info("Serving Prometheus metrics on http://%s:%d/metrics", self.address, self.port)

    def batch_finished(self, report: BatchReport, seconds: float) -> None:
        if report.published:
            self.published.inc(report.published)
        if report.dead:
            self.dead.inc(report.dead)
        if report.lost:
            self.lost.inc(report.lost)
        self.batch_duration.observe(seconds)

    def events_published(
        self, created_at: Sequence[dt.datetime], acknowledged_at: dt.datetime
    ) -> None:
        observe = self.latency.observe
        for created in created_at:
            observe(max(0.0, (acknowledged_at - created).total_seconds()))

    def events_failed(self, reason: str, count: int) -> None:
        self.failed.labels(reason=reason).inc(count)

    def backlog_measured(self, backlog: Backlog) -> None:
        self.pending.set(backlog.pending)
        self.held_back.set(backlog.held_back)
        self.dead_now.set(backlog.dead)
        self.oldest.set(backlog.oldest_pending_age or 0)
        self.live_relays.set(backlog.live_relays)
        self.backlog_at.set_to_current_time()

    def relay_stopped(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
