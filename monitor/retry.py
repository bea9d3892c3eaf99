"""Pure retry policy: when a failing source is polled again, when a delivery is tried again."""

from __future__ import annotations

import random
from typing import Sequence

JITTER = 0.1


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    """Spread retries by +/-10% so failures that started together do not retry together."""
    spread = (rng or random).uniform(-JITTER, JITTER)
    return max(0.0, seconds * (1 + spread))


def source_delay(failures: int, interval: float, ceiling: float,
                 retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds until a source is polled again after `failures` consecutive failures.

    Doubles the interval per failure up to the ceiling, never polls sooner than the server's
    Retry-After, and never stops: a source that recovers is back on its interval at once.
    """
    if failures <= 0:
        return interval
    delay = min(interval * 2 ** min(failures - 1, 30), max(ceiling, interval))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return jittered(delay, rng)


def delivery_delay(attempts: int, schedule: Sequence[float], retry_after: float | None = None,
                   rng: random.Random | None = None) -> float | None:
    """Seconds before the next try after `attempts` failed tries; None means dead-letter."""
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1]
    if retry_after is not None:
        delay = max(delay, retry_after)
    return jittered(delay, rng)
