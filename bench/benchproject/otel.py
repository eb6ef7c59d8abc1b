"""OpenTelemetry's SDK for the relay benchmark's ``--observe`` runs (``BENCH_OTEL=1``).

A tracer provider with the batch span processor a deployment would use, exporting to an
exporter that drops the spans: what tracing costs the relay, without an exporter's
network I/O in the figure."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class DroppingExporter(SpanExporter):
    """Accepts every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def setup() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    trace.set_tracer_provider(provider)
