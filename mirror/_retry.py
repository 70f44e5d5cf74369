"""Backoff decisions, and the one retry loop every request and download goes through.

:func:`next_delay` is a pure function of the attempt number. :class:`Retrying` is the
loop: API calls (``Http.retrying``), file downloads, the ENA report reader and Webin
submissions all run their attempts in it, so the same error gets the same treatment
everywhere: retried when its class is :class:`~mirror._exceptions.Retryable`, after
the same jittered backoff, never sooner than a server's ``Retry-After``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ._exceptions import MirrorError, RateLimited, Retryable

__all__ = [
    "Attempt",
    "Retry",
    "RetryPolicy",
    "Retrying",
    "next_delay",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


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


def is_retryable(error: MirrorError) -> bool:
    """The default policy: the error's class says."""
    return isinstance(error, Retryable)


def asked_wait(error: MirrorError) -> float | None:
    """The wait the server asked for with this error (``Retry-After``), if any."""
    return error.retry_after if isinstance(error, RateLimited) else None


@dataclass(frozen=True, slots=True)
class Retry:
    """One failed attempt that will be tried again, as told to ``on_retry``."""

    error: MirrorError
    #: Attempts counted so far (1 after the first failure).
    attempt: int
    #: Seconds until the next attempt (0 for an uncounted one).
    delay: float
    #: False when the attempt did not count against the budget (its host was paused).
    counted: bool


class Attempt:
    """One try: ``with attempt:`` around it hands its error to the loop.

    ``previous`` is the error that ended the try before (None on the first), for
    callers that prepare each try from it (a new ticket after a ticket expired).
    """

    def __init__(self, loop: Retrying, number: int, previous: MirrorError | None) -> None:
        self._loop = loop
        self.number = number
        self.previous = previous

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._loop._done = True
            return False
        if not isinstance(exc, MirrorError):
            return False  # a bug, a cancellation or an OSError: not ours to judge
        return self._loop._failed(exc)


class Retrying:
    """The retry loop, as attempts to iterate over (so a generator can yield inside one)::

        async for attempt in Retrying("what", policy, sleep=clock.sleep):
            with attempt:
                return await once()

    An error leaving the ``with`` is tried again when ``worth(error)`` (by default:
    its class is :class:`Retryable`) and the policy has attempts left; otherwise it
    propagates unchanged, or, when the budget ran out, as ``gave_up(error, attempts)``
    says. ``uncounted(error)``: the attempt does not count and the next one starts at
    once (a host paused by its breaker: the next request waits for the probe).
    ``caps``: at most this many attempts may end in an error of that class (a digest
    wrong three times in a row is no passing fault). Anything but a
    :class:`MirrorError` always propagates.
    """

    def __init__(
        self,
        what: str,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random | None = None,
        worth: Callable[[MirrorError], bool] = is_retryable,
        uncounted: Callable[[MirrorError], bool] | None = None,
        caps: Mapping[type[MirrorError], int] | None = None,
        on_retry: Callable[[Retry], None] | None = None,
        gave_up: Callable[[MirrorError, int], BaseException] | None = None,
    ) -> None:
        self.what = what
        self.policy = policy
        self._sleep = sleep
        self._rng = rng
        self._worth = worth
        self._uncounted = uncounted
        self._caps = dict(caps or {})
        self._capped = dict.fromkeys(self._caps, 0)
        self._on_retry = on_retry
        self._gave_up = gave_up
        #: Attempts counted so far.
        self.attempts = 0
        self._done = False
        self._error: MirrorError | None = None
        #: The wait before the next attempt (None: start it at once).
        self._delay: float | None = None

    def __aiter__(self) -> Retrying:
        return self

    async def __anext__(self) -> Attempt:
        if self._done:
            raise StopAsyncIteration
        if self._delay is not None:
            await self._sleep(self._delay)
        self._delay = None
        self.attempts += 1
        return Attempt(self, self.attempts, self._error)

    async def call(self, fn: Callable[[MirrorError | None], Awaitable[T]]) -> T:
        """``fn(previous_error)`` in this loop until it returns."""
        async for attempt in self:
            with attempt:
                return await fn(attempt.previous)
        raise AssertionError("a retry loop ends by returning or raising")  # pragma: no cover

    def _failed(self, error: MirrorError) -> bool:
        """Whether the loop takes ``error`` (and tries again); raises to give up."""
        self._error = error
        if self._uncounted is not None and self._worth(error) and self._uncounted(error):
            self.attempts -= 1
            self._tell(Retry(error, self.attempts, 0.0, counted=False))
            return True
        if not self._worth(error):
            return False
        delay = next_delay(self.policy, self.attempts, retry_after=asked_wait(error), rng=self._rng)
        for kind, cap in self._caps.items():
            if isinstance(error, kind):
                self._capped[kind] += 1
                if self._capped[kind] >= cap:
                    delay = None
        if delay is None:
            if self._gave_up is not None:
                raise self._gave_up(error, self.attempts) from error
            return False
        logger.info("%s: %s; retry %d in %.1fs", self.what, error, self.attempts, delay)
        self._delay = delay
        self._tell(Retry(error, self.attempts, delay, counted=True))
        return True

    def _tell(self, retry: Retry) -> None:
        if self._on_retry is not None:
            self._on_retry(retry)
