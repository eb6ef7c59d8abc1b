"""Time-ordered identifiers (UUIDv7, RFC 9562).

UUIDv7 keeps inserts at the right edge of the primary-key index, where random UUIDv4
values would scatter them. The standard library has ``uuid.uuid7`` from Python 3.14; before
that we use the maintained ``uuid6`` package.
"""

from __future__ import annotations

import uuid

try:  # Python 3.14+
    from uuid import uuid7 as _uuid7  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - depends on the interpreter
    from uuid6 import uuid7 as _uuid7


def uuid7() -> uuid.UUID:
    """A new UUIDv7 as a standard :class:`uuid.UUID`."""
    return uuid.UUID(int=_uuid7().int)
