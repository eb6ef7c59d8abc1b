"""``OrdersJSONRenderer``: the package's responses, the same bytes for every client.

DRF's :class:`~rest_framework.renderers.JSONRenderer` indents its output when the
``Accept`` header carries an ``indent`` parameter (``application/json; indent=4``), and
takes its spacing and escaping from the host's ``COMPACT_JSON`` / ``UNICODE_JSON``
settings. The package's responses do neither: one version of an order is always the same
bytes, as its strong ``ETag`` promises (RFC 9110 §8.8.1), and a stored idempotent response
replays identically whoever asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer

__all__ = ["OrdersJSONRenderer"]


class OrdersJSONRenderer(JSONRenderer):
    """Compact UTF-8 JSON (DRF's defaults), whatever the request's ``Accept`` asks for."""

    compact = True
    ensure_ascii = False

    def get_indent(self, accepted_media_type: str, renderer_context: Mapping[str, Any]) -> None:
        return None
