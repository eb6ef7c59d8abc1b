"""``OrdersJSONRenderer``: the package's responses, the same bytes for every client.

DRF's :class:`~rest_framework.renderers.JSONRenderer` indents its output when the
``Accept`` header carries an ``indent`` parameter (``application/json; indent=4``), and
takes its spacing and escaping from the host's ``COMPACT_JSON`` / ``UNICODE_JSON``
settings. The package's responses do neither: one version of an order is always the same
bytes, as its strong ``ETag`` promises (RFC 9110 §8.8.1), and a stored idempotent response
replays identically whoever asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer

__all__ = ["JSONOnlyNegotiation", "OrdersJSONRenderer"]


class OrdersJSONRenderer(JSONRenderer):
    """Compact UTF-8 JSON (DRF's defaults), whatever the request's ``Accept`` asks for."""

    compact = True
    ensure_ascii = False

    def get_indent(self, accepted_media_type: str, renderer_context: Mapping[str, Any]) -> None:
        return None


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Always answer with the view's first renderer, whatever ``Accept`` says.

    The package's views have one representation. RFC 9110 §12.5.1 lets a server disregard
    an ``Accept`` it cannot satisfy and send its default rather than 406; a client that
    sends ``Accept: application/problem+json`` alone (or ``text/html``) thereby still gets
    its 404 or its order, not an unrelated 406.
    """

    def select_renderer(
        self, request: Any, renderers: Iterable[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type
