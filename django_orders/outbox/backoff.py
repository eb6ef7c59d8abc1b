"""When a failed event is tried again: exponential backoff with full jitter.

"Full jitter" (AWS Architecture Blog, *Exponential Backoff And Jitter*, 2015): the delay
is drawn uniformly from ``[0, min(cap, base * 2 ** (attempt - 1))]``. Spreading retries
over the whole window keeps many failed events (say, every event of a receiver that was
down) from coming due in the same instant and hammering it the moment it recovers.
"""

from __future__ import annotations

import random

#: The window of the first retry, seconds: the first retry comes within a second.
BASE_DELAY = 1.0


def retry_delay(
    attempts: int,
    *,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt of an event that has failed ``attempts`` times.

    ``retry_after`` is the receiver's own hint (HTTP ``Retry-After``): the delay is never
    shorter than it, but never longer than ``cap`` either — ``OUTBOX_BACKOFF_MAX`` is the
    longest wait between two attempts, whoever asks for more.
    """
    window = min(cap, BASE_DELAY * 2 ** max(0, min(attempts - 1, 62)))
    delay = (rng or random).uniform(0.0, window)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return max(0.0, min(delay, cap))
