"""The transactional outbox: events written with the change they describe, and the relay
that publishes them. docs/architecture.md draws the whole; each module is one part:

- :mod:`~django_orders.outbox.recording` — writing an event in the caller's transaction
  (and ``NOTIFY`` on PostgreSQL);
- :mod:`~django_orders.outbox.cloudevents` — an event as a CloudEvents 1.0 document;
- :mod:`~django_orders.outbox.relay` — the relay's loop (``manage.py orders_outbox_relay``);
- :mod:`~django_orders.outbox.strategies` — how the relay runs a batch's steps: in
  sequence, or overlapped (claim ahead, write behind);
- :mod:`~django_orders.outbox.batches` — the steps of one batch: claim, send, wait, write
  back;
- :mod:`~django_orders.outbox.claims` — the delivery rules through the ORM: leases,
  fencing, per-aggregate order, backoff deferral, dead events;
  :mod:`~django_orders.outbox.postgres` — the same rules in single statements;
- :mod:`~django_orders.outbox.lease` — renewing the leases a relay holds;
- :mod:`~django_orders.outbox.backoff` — when a failed event is tried again;
- :mod:`~django_orders.outbox.wakeup` — waiting for ``NOTIFY``, the next poll or a stop;
- :mod:`~django_orders.outbox.exclusive` — the one-relay lock where ``SKIP LOCKED`` is
  missing (SQLite);
- :mod:`~django_orders.outbox.maintenance` — re-queue, discard, purge and status.

The SQL they run by hand is in :mod:`django_orders.sql`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_orders.outbox.recording import record_event

__all__ = ["record_event"]


def __getattr__(name: str) -> Any:
    # Lazily: the publishers import this package's cloudevents module, and must not need
    # the models (nor Django's app registry) to be importable.
    if name == "record_event":
        from django_orders.outbox.recording import record_event

        return record_event
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
