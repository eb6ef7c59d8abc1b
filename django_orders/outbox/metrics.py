"""What a relay reports as it works: one small hook, :class:`RelayMetrics`.

The relay calls its methods where the facts are known — a batch written back
(:mod:`~django_orders.outbox.batches`), events acknowledged or failed, the backlog measured
by the heartbeat thread (:mod:`~django_orders.outbox.heartbeat`). The base class does
nothing; subclass it to feed StatsD, OpenTelemetry metrics or anything else, and name the
class in ``OUTBOX_METRICS`` or pass an instance as ``Relay(metrics=…)``. The package ships
a Prometheus implementation (:mod:`~django_orders.outbox.prometheus`, the ``prometheus``
extra), chosen by ``orders_outbox_relay --metrics-port`` or ``OUTBOX_METRICS_PORT``.

The methods are called on the relay's threads (the write-back's, the heartbeat's): keep
them quick and thread-safe, and never let them raise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Protocol


class InFlightCount(Protocol):
    @property
    def in_flight(self) -> int:
        """Batches handed to the publisher whose results are not in yet."""


class RunningRelay(Protocol):
    """What a hook may read of the relay that started it: a
    :class:`~django_orders.outbox.relay.Relay`, described here so that this module
    imports nothing of the relay it serves."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def batches(self) -> InFlightCount: ...


@dataclasses.dataclass
class BatchReport:
    """What one batch did; also the running totals of a relay (``Relay.totals``)."""

    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0  # outcomes not written: the lease had passed to another relay
    released: int = 0  # not sent because the relay was stopping: given back, due at once

    def add(self, other: BatchReport) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass(frozen=True)
class Backlog:
    """The outbox as the heartbeat thread last measured it (as ``orders_outbox_status``
    counts it, all tenants together), and how many relays are alive."""

    pending: int
    held_back: int
    dead: int
    #: Seconds since the oldest pending event (held-back ones aside) was recorded.
    oldest_pending_age: float | None
    live_relays: int


class RelayMetrics:
    """The relay's metrics hook. Every method is a no-op here; override those you need.

    The backlog query runs (every ``OUTBOX_METRICS_INTERVAL``, on the heartbeat thread)
    only for a subclass that overrides :meth:`backlog_measured`.
    """

    def relay_started(self, relay: RunningRelay) -> None:
        """The relay is about to claim. ``relay.batches.in_flight`` (batches handed to the
        publisher, results not in yet) and ``relay.id`` may be read from here on."""

    def batch_finished(self, report: BatchReport, seconds: float) -> None:
        """A batch was written back: ``report`` counts its events published, failed, dead
        and lost; ``seconds`` from its claim to its write-back."""

    def events_published(
        self, created_at: Sequence[dt.datetime], acknowledged_at: dt.datetime
    ) -> None:
        """Events the publisher acknowledged at ``acknowledged_at``, recorded (committed,
        to the clock's precision) at ``created_at``: the publish latency of each."""

    def events_failed(self, reason: str, count: int) -> None:
        """``count`` publishes failed for ``reason``: ``transient``, ``permanent``,
        ``timeout``, ``unavailable``, ``abandoned`` (claimed too often without an outcome)
        or ``error`` (the publisher raised)."""

    def backlog_measured(self, backlog: Backlog) -> None:
        """The backlog, measured every ``OUTBOX_METRICS_INTERVAL``."""

    def relay_stopped(self) -> None:
        """The relay has stopped (release what :meth:`relay_started` set up)."""


def measures_latency(metrics: RelayMetrics) -> bool:
    """Whether ``metrics`` wants the publish latency (overrides :meth:`events_published`):
    the relay then gives it each published event's creation time."""
    return type(metrics).events_published is not RelayMetrics.events_published


def measures_backlog(metrics: RelayMetrics) -> bool:
    """Whether ``metrics`` wants the backlog (overrides :meth:`backlog_measured`)."""
    return type(metrics).backlog_measured is not RelayMetrics.backlog_measured
