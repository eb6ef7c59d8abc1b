"""A correlation id on every request and on every event it records.

``CorrelationIdMiddleware`` takes the id from the request's ``X-Correlation-Id`` header
(or makes one), keeps it for the request in a ``ContextVar`` and echoes it in the answer;
``add_correlation_id`` — one of ``DJANGO_ORDERS["EVENT_ENRICHERS"]`` — puts it on every
event the request records, as the CloudEvents extension attribute ``correlationid``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

from django_orders.models import OutboxEvent

HEADER = "X-Correlation-Id"
# What a client may send: short, printable, no spaces (anything else is replaced).
VALID = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sent = request.headers.get(HEADER, "")
        value = sent if VALID.match(sent) else str(uuid.uuid4())
        token = correlation_id.set(value)
        try:
            response = self.get_response(request)
        finally:
            correlation_id.reset(token)
        response[HEADER] = value
        return response


def add_correlation_id(event: OutboxEvent) -> None:
    """The ``EVENT_ENRICHERS`` hook: the request's correlation id on the event."""
    value = correlation_id.get()
    if value is not None:
        event.extensions["correlationid"] = value
