"""The CloudEvents wire format of outbox events — an alias of
:mod:`django_orders.outbox.cloudevents`, kept because publishers import it from here
(docs/guide/publishers.md)."""

from django_orders.outbox.cloudevents import (
    CONTENT_TYPE,
    DATA_CONTENT_TYPE,
    SPECVERSION,
    serialize,
    to_cloudevent,
    trace_headers,
)

__all__ = [
    "CONTENT_TYPE",
    "DATA_CONTENT_TYPE",
    "SPECVERSION",
    "serialize",
    "to_cloudevent",
    "trace_headers",
]
