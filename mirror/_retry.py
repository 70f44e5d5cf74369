"""Backoff decisions: pure functions of the attempt number, never sleeping themselves."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy", "next_delay", "parse_retry_after"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for a bounded number of attempts."""

    #: Attempts in all, the first one included.
    attempts: int = 8
    #: Delay scale before the second attempt, in seconds.
    base: float = 0.5
    #: No single wait is longer than this (a ``Retry-After`` may ask for more, up to ``max_wait``).
    cap: float = 30.0
    #: Longest ``Retry-After`` we agree to honour; longer asks are clipped to this.
    max_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("delays must not be negative")


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

    ``attempt`` counts the attempts made so far (1 after the first failure). Full
    jitter (AWS architecture blog, "Exponential Backoff And Jitter"): a delay drawn
    from the whole of ``[0, min(cap, base * 2**(attempt-1))]``, which spreads many
    workers that failed together furthest apart. A server's ``Retry-After`` is a
    floor: we never come back sooner than asked.
    """
    if attempt >= policy.attempts:
        return None
    ceiling = min(policy.cap, policy.base * (2 ** (attempt - 1)))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_wait))
    return delay


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))
