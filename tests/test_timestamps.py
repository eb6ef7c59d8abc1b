"""docs/api/: timestamps are RFC 3339, UTC, with microseconds and a ``Z``."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from django_orders.timestamps import rfc3339


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2026, 12, 7, 8, 9, 10, 123456, tzinfo=dt.UTC), "2026-12-07T08:09:10.123456Z"),
        (dt.datetime(2026, 12, 7, 8, 9, 10, tzinfo=dt.UTC), "2026-12-07T08:09:10.000000Z"),
        # RFC 3339's date-fullyear is four digits: glibc's strftime("%Y") wrote "999".
        (dt.datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), "0999-01-02T03:04:05.000006Z"),
        (
            dt.datetime(2026, 1, 1, 5, 30, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
            "2026-01-01T00:00:00.000000Z",
        ),
        (None, None),
    ],
)
def test_rfc3339(value: dt.datetime | None, text: str | None) -> None:
    assert rfc3339(value) == text
    if value is not None:
        assert dt.datetime.fromisoformat(text) == value  # type: ignore[arg-type]
