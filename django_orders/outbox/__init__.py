"""The building blocks of the outbox relay (:mod:`django_orders.relay`).

- :mod:`~django_orders.outbox.claims` — claiming a batch under a lease, renewing it, and
  writing outcomes back fenced on the lease token.
- :mod:`~django_orders.outbox.backoff` — when a failed event is tried again.
- :mod:`~django_orders.outbox.wakeup` — waiting for ``NOTIFY``, the next poll or a signal.
- :mod:`~django_orders.outbox.exclusive` — the one-relay lock where ``SKIP LOCKED`` is missing.
- :mod:`~django_orders.outbox.maintenance` — re-queue, discard, purge and status queries.
"""
