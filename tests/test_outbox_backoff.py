"""When a failed event is tried again: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random

from django_orders.outbox.backoff import retry_delay


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(4)
    for attempts in range(1, 12):
        window = min(300.0, 2.0 ** (attempts - 1))
        delays = [retry_delay(attempts, cap=300, rng=rng) for _ in range(200)]
        assert all(0 <= d <= window for d in delays)
        assert max(delays) > window * 0.8  # spread over the whole window
        assert min(delays) < window * 0.2
    assert retry_delay(1, cap=300, rng=rng) <= 1.0  # first retry within a second


def test_backoff_honours_retry_after_but_not_past_the_cap() -> None:
    assert retry_delay(1, cap=300, retry_after=20) == 20
    assert retry_delay(1, cap=300, retry_after=3600) == 300
    assert retry_delay(60, cap=10) <= 10
