"""Transfer rate a person can trust: withheld until there is signal, then smoothed.

A rate computed from the first few hundred milliseconds of a run (one TCP window,
one slow TLS handshake) can be off by orders of magnitude, and an ETA divides by it:
``510 bytes/s, 5:49:15`` for what then takes a minute. So no rate is given until
bytes have been flowing for :data:`MIN_SPAN` seconds; from then on it is an
exponentially weighted moving average with time constant :data:`TAU`, seeded with
the mean rate over the first span. A stall decays it towards zero at that pace
instead of dropping it at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["MIN_SPAN", "TAU", "RateMeter", "eta"]

#: Seconds of flowing bytes before a rate is given at all.
MIN_SPAN = 1.5
#: Time constant of the moving average, in seconds.
TAU = 5.0


class RateMeter:
    """Bytes per second of a counter that only grows, sampled whenever convenient."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Where the signal starts: the first sample after bytes began to flow.
        self._since: float | None = None
        self._first = 0
        self._last_t = 0.0
        self._last_n = 0
        self._rate: float | None = None
        self._flowing = False

    def sample(self, total: int) -> float | None:
        """Record that the counter is at ``total`` now; return the rate, or None."""
        now = self._clock()
        if self._since is None:
            # Bytes before the first sample arrived over an unknown span: the
            # signal starts here, from whatever the counter already says.
            self._since, self._first = now, total
            self._last_t, self._last_n = now, total
            return None
        dt = now - self._last_t
        if dt <= 0:
            return self._rate
        if self._rate is None:
            if not self._flowing:
                # Nothing had flowed at the last sample (planning, connecting), so when
                # in this interval the bytes began is unknown: the span starts here.
                self._flowing = total != self._first
                self._since, self._first = now, total
            elif now - self._since >= MIN_SPAN:
                self._rate = (total - self._first) / (now - self._since)
        else:
            alpha = 1.0 - math.exp(-dt / TAU)
            self._rate += alpha * ((total - self._last_n) / dt - self._rate)
        self._last_t, self._last_n = now, total
        return self._rate

    @property
    def rate(self) -> float | None:
        return self._rate


def eta(remaining: int, rate: float | None) -> float | None:
    """Seconds to move ``remaining`` bytes at ``rate``; None when the rate says nothing."""
    if rate is None or remaining < 0:
        return None
    if remaining == 0:
        return 0.0
    # Below a byte a second "ETA" is noise, not an estimate: call it stalled instead.
    if rate < 1.0:
        return None
    return remaining / rate
