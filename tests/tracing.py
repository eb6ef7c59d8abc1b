"""OpenTelemetry in the tests: the SDK with an in-memory exporter, and a middleware that
opens a server span per request, as OpenTelemetry's Django instrumentation does.

The SDK's tracer provider is process-wide and can be set once: :func:`exporter` sets it on
first use and hands out its exporter (cleared by each test that uses it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

W3C = TraceContextTextMapPropagator()


@functools.cache
def exporter() -> InMemorySpanExporter:
    """The in-memory exporter of the process's SDK tracer provider (set up once)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def tracer() -> trace.Tracer:
    exporter()
    return trace.get_tracer("tests")


def finished(name: str) -> list[ReadableSpan]:
    """The finished spans called ``name``."""
    return [span for span in exporter().get_finished_spans() if span.name == name]


def hex_ids(context: trace.SpanContext) -> tuple[str, str]:
    """(trace id, span id) as ``traceparent`` writes them."""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def continue_trace(headers: Mapping[str, Any], name: str) -> trace.Span:
    """What a consumer does: extract the W3C context from a message's headers and start a
    span in it (ended at once; the caller reads its context)."""
    carrier = {
        (key.decode() if isinstance(key, bytes) else key).lower(): (
            value.decode() if isinstance(value, bytes) else value
        )
        for key, value in headers.items()
    }
    with tracer().start_as_current_span(
        name, context=W3C.extract(carrier), kind=trace.SpanKind.CONSUMER
    ) as span:
        return span


class RequestSpanMiddleware:
    """A server span around each request, continuing the client's ``traceparent``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Header names as Django gives them ("Traceparent"): the getter is case-sensitive.
        context = W3C.extract({k.lower(): v for k, v in request.headers.items()})
        with tracer().start_as_current_span(
            f"{request.method} {request.path}", context=context, kind=trace.SpanKind.SERVER
        ):
            return self.get_response(request)
