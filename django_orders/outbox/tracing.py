"""Trace context on outbox events (W3C Trace Context, CloudEvents Distributed Tracing).

When OpenTelemetry's API is installed and a span is current while an event is recorded,
:func:`current_trace_context` gives its ``traceparent`` (and ``tracestate``) and
``outbox.recording`` stores them as the event's extension attributes. They go out in the
CloudEvent (the Distributed Tracing extension's attributes) and as each transport's native
header (:func:`django_orders.outbox.cloudevents.trace_headers`), so a consumer continues the
trace of the request that made the change.

The relay side: :func:`start_publish_span` opens one span per batch handed to the
publisher, *linked* to the recorded context of each of its events (a batch is published
for many requests at once: it belongs to none of their traces, and a link lets a trace
viewer jump from a request to the publish and back). The OpenTelemetry messaging
conventions describe batch sending the same way ("Send" span, links to each message's
creation context).

Whether OpenTelemetry is there is found out once, on first use; without it nothing is
imported and each call returns at once. The format is always W3C Trace Context, whatever
propagators the host configured: it is what the CloudEvents extension specifies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: The CloudEvents Distributed Tracing extension's attributes (W3C Trace Context headers).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_ATTRIBUTES = (TRACEPARENT, TRACESTATE)

#: The instrumentation scope of the relay's spans.
TRACER_NAME = "django_orders.outbox"

#: A ``traceparent`` (W3C Trace Context §3.2): version, trace id, parent id, flags; a
#: later version may append fields, version ``ff`` is invalid.
TRACEPARENT_FORMAT = re.compile(
    r"\A(?!ff)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-[^\s]*)?\Z"
)


class _OpenTelemetry:
    """What the package uses of ``opentelemetry-api``, imported once."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace = trace
        self.empty_context = context.Context()
        self.propagator = TraceContextTextMapPropagator()


@functools.cache
def opentelemetry() -> _OpenTelemetry | None:
    """OpenTelemetry's API, or ``None`` when it is not installed (asked once)."""
    try:
        return _OpenTelemetry()
    except ImportError:
        return None


def current_trace_context() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the span current in this thread; empty when
    OpenTelemetry is not installed or no valid span is current."""
    otel = opentelemetry()
    if otel is None:
        return {}
    carrier: dict[str, str] = {}
    # Injects nothing for an invalid (or no) span: W3C Trace Context, "traceparent".
    otel.propagator.inject(carrier)
    return carrier


def add_trace_context(extensions: dict[str, Any]) -> None:
    """Store the current trace context in an event's ``extensions``. One the caller put
    there itself wins (an event recorded on behalf of an upstream message, say)."""
    if TRACEPARENT in extensions:
        return
    extensions.update(current_trace_context())


class PublishSpan:
    """The span of one batch's publish: from the hand-over to the publisher to the last
    result. :meth:`end` records the outcome."""

    def __init__(self, span: Any, otel: _OpenTelemetry) -> None:
        self._span = span
        self._otel = otel

    def end(self, sent: int, failed: int) -> None:
        span = self._span
        if span.is_recording():
            span.set_attribute("messaging.batch.message_count", sent)
            if failed:
                span.set_attribute("django_orders.outbox.failed", failed)
                span.set_status(
                    self._otel.trace.Status(
                        self._otel.trace.StatusCode.ERROR, f"{failed} of {sent} events failed"
                    )
                )
        span.end()


def start_publish_span(publisher: str, events: Iterable[Mapping[str, Any]]) -> PublishSpan | None:
    """Open the span of a batch's publish, linked to each event's recorded trace context;
    ``None`` without OpenTelemetry (the caller then has nothing to end)."""
    otel = opentelemetry()
    if otel is None:
        return None
    trace = otel.trace
    links = []
    for event in events:
        traceparent = event.get(TRACEPARENT)
        # Parsed here rather than by the propagator's extract(): a link needs no
        # tracestate, and extract() builds a whole Context per event (measured: about
        # 5 × the cost, docs/benchmarks.md).
        found = TRACEPARENT_FORMAT.match(traceparent) if isinstance(traceparent, str) else None
        if found is None:
            continue
        trace_id, span_id, flags = found.groups()
        linked = trace.SpanContext(
            int(trace_id, 16), int(span_id, 16), True, trace.TraceFlags(int(flags, 16))
        )
        if linked.is_valid:
            links.append(trace.Link(linked))
    span = trace.get_tracer(TRACER_NAME).start_span(
        "outbox send",
        # A root of its own: the batch is published for many requests, linked to each.
        context=otel.empty_context,
        kind=trace.SpanKind.PRODUCER,
        links=links,
        attributes={
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "django_orders.outbox.publisher": publisher,
        },
    )
    return PublishSpan(span, otel)
