#!/usr/bin/env python
"""CPU cost per event of the relay's observability steps (issue 12), in process.

    .venv/bin/python bench/run_observability.py

Needs opentelemetry-sdk and prometheus-client. No database: each step is timed alone
(``timeit``, best of 5), with OpenTelemetry's SDK set up as ``bench/run_relay.py
--observe`` sets it up (a batch span processor, spans dropped):

- recording: the current span's trace context added to an event (and without a span);
- the relay: one ``outbox send`` span per batch of 100 traced events, linked to each;
- the publishers: the native trace headers of an event;
- Prometheus: a batch's counts, duration and 100 latencies.
"""

from __future__ import annotations

import datetime as dt
import sys
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR)]

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_orders"],
)
django.setup()

from benchproject.otel import setup as setup_tracing  # noqa: E402
from opentelemetry import trace  # noqa: E402

from django_orders.cloudevents import trace_headers  # noqa: E402
from django_orders.outbox import tracing  # noqa: E402
from django_orders.outbox.metrics import BatchReport  # noqa: E402
from django_orders.outbox.prometheus import PrometheusMetrics  # noqa: E402

BATCH = 100


def per_call(step: Callable[[], object], number: int) -> float:
    """Seconds per call, best of 5 repeats."""
    return min(timeit.repeat(step, number=number, repeat=5)) / number


def main() -> None:
    setup_tracing()
    tracer = trace.get_tracer("bench")
    with tracer.start_as_current_span("request"):
        record = per_call(lambda: tracing.add_trace_context({}), 20_000)
    record_no_span = per_call(lambda: tracing.add_trace_context({}), 20_000)

    events = []
    for _ in range(BATCH):
        with tracer.start_as_current_span("request"):
            extensions: dict[str, str] = {}
            tracing.add_trace_context(extensions)
        events.append({"id": str(uuid.uuid4()), **extensions})

    def publish_span() -> None:
        span = tracing.start_publish_span("WebhookPublisher", events)
        assert span is not None
        span.end(sent=BATCH, failed=0)

    span = per_call(publish_span, 500) / BATCH
    headers = per_call(lambda: [trace_headers(e) for e in events], 2_000) / BATCH

    metrics = PrometheusMetrics()
    now = dt.datetime.now(dt.UTC)
    created = [now - dt.timedelta(milliseconds=5)] * BATCH
    report = BatchReport(claimed=BATCH, published=BATCH)

    def batch_metrics() -> None:
        metrics.events_published(created, now)
        metrics.batch_finished(report, 0.02)

    prometheus = per_call(batch_metrics, 2_000) / BATCH
    relay = span + headers + prometheus
    print(f"recording, a span current:     {record * 1e6:6.2f} µs per event")
    print(f"recording, no span current:    {record_no_span * 1e6:6.2f} µs per event")
    print(f"relay: publish span (linked):  {span * 1e6:6.2f} µs per event")
    print(f"publishers: native headers:    {headers * 1e6:6.2f} µs per event")
    print(f"relay: Prometheus metrics:     {prometheus * 1e6:6.2f} µs per event")
    print(f"relay, all together:           {relay * 1e6:6.2f} µs per event")


if __name__ == "__main__":
    main()
