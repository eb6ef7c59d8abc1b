"""Timestamps as the API and the events write them. No model import: usable anywhere."""

from __future__ import annotations

import datetime as dt


def rfc3339(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC timestamp with microseconds, ``Z`` suffix (``None`` stays ``None``).

    The year has four digits, as RFC 3339 requires (``0999-…``): ``isoformat()`` pads it,
    where ``strftime("%Y")`` on glibc does not."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
