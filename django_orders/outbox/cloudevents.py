"""Outbox events on the wire: CloudEvents 1.0, structured JSON mode.

One function builds the document (:func:`to_cloudevent`), one turns it into the bytes
every shipped publisher sends (:func:`serialize`), so a webhook body, an AMQP message and
a Redis stream entry carry byte-for-byte the same event.

Attribute names follow the CloudEvents 1.0 core spec; ``tenantid`` is an extension
attribute (the spec allows only lowercase ASCII letters and digits in attribute names,
hence not ``tenantId``). ``id`` is the outbox row's UUID, so a redelivery carries the same
``id`` and consumers dedupe on it (the spec: ``source`` + ``id`` identify an event).

An event recorded under a trace carries ``traceparent`` / ``tracestate`` (the Distributed
Tracing extension); :func:`trace_headers` gives them to the publishers, which also send them
as their transport's native headers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django_orders.conf import orders_settings
from django_orders.outbox.tracing import TRACE_ATTRIBUTES, TRACEPARENT, TRACESTATE
from django_orders.timestamps import rfc3339

if TYPE_CHECKING:
    from django_orders.models import OutboxEvent
    from django_orders.outbox.claims import ClaimedEvent

SPECVERSION = "1.0"
#: The ``Content-Type`` of a structured-mode CloudEvent in JSON (CloudEvents JSON format §3).
CONTENT_TYPE = "application/cloudevents+json"
#: The media type of ``data``.
DATA_CONTENT_TYPE = "application/json"


def to_cloudevent(event: OutboxEvent | ClaimedEvent) -> dict[str, Any]:
    """The CloudEvents 1.0 document of an outbox event (a model instance, or the row a
    relay claimed), as a JSON-ready dict."""
    # A claimed event carries its time as the document writes it already.
    time = getattr(event, "time", None) or rfc3339(event.created_at)
    document = {
        "specversion": SPECVERSION,
        "id": str(event.id),
        "source": orders_settings.EVENT_SOURCE,
        "type": event.type,
        "subject": str(event.aggregate_id),
        "time": time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "tenantid": event.tenant_id,
    }
    if event.extensions:
        # Checked when the event was recorded: names that the document does not already
        # use (outbox.recording.enrich).
        document.update(event.extensions)
    document["data"] = event.payload
    return document


#: ``json.dumps(…, separators=(",", ":"), ensure_ascii=False)`` without building an encoder
#: per call (``json.dumps`` reuses one only for its default arguments).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def serialize(cloudevent: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a CloudEvent: the body every shipped publisher sends.

    ``ensure_ascii=False`` keeps non-ASCII metadata readable and short; keys keep their
    insertion order (the spec gives JSON members no order, consumers must not rely on it).
    A lone surrogate cannot be UTF-8 encoded: then the text is escaped instead (still
    valid JSON), so an odd payload never makes a publish crash.
    """
    text = _encode(cloudevent)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(cloudevent, separators=(",", ":")).encode("ascii")


def trace_headers(cloudevent: dict[str, Any]) -> dict[str, str]:
    """The W3C Trace Context of a CloudEvent as headers (``traceparent``, ``tracestate``):
    what each publisher also sends natively, so a consumer's instrumentation finds it
    without parsing the body. Empty for an event recorded outside a trace."""
    if TRACEPARENT not in cloudevent and TRACESTATE not in cloudevent:
        return {}  # the common case, without a comprehension per event
    return {name: cloudevent[name] for name in TRACE_ATTRIBUTES if name in cloudevent}
