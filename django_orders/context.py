"""Setting a :class:`~contextvars.ContextVar` for the length of a block.

The package's context variables (the current tenant, the replica a block reads from) are
only ever set this way: a value never outlives the block that set it, however the block
ends, and an enclosing block's value comes back on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["bound"]

T = TypeVar("T")


@contextmanager
def bound(var: ContextVar[T], value: T) -> Iterator[None]:
    """``var`` holds ``value`` inside the block; its previous value is restored after."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
