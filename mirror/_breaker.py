"""The per-host breaker: pause a host that stops answering, probe it, give up on it.

The HTTP client (:mod:`mirror._http`) keeps one :class:`Breaker` per host and tells
it how each request went; a host given up on fails its files at once with
:class:`~mirror._exceptions.HostDown`.
"""

from __future__ import annotations

import asyncio
import logging

from ._clock import REAL_CLOCK, Clock
from ._exceptions import ConnectionFailed, HostDown, UntrustedCertificate
from ._tuning import HttpTuning

__all__ = ["Breaker"]

#: One logger name for all of the HTTP client's lines (the CLI prints it before each).
logger = logging.getLogger("mirror._http")


class Breaker:
    """Stop sending a host requests it cannot answer; fail its files together when it is down.

    Closed (normal): requests flow. After ``breaker_failures`` connection failures
    in a row (refused, reset or no answer before the response, connect timeout) the
    host is *paused*: requests wait, and one at a time goes out as a probe, with a
    growing pause between probes. Any answer (whatever its status) closes it again.
    When the failures have lasted ``down_after`` seconds the host is *down* for the
    rest of the run: every request to it fails at once with :class:`HostDown`, so
    10,000 queued files cost no time instead of a retry budget each.
    """

    def __init__(
        self,
        key: str,
        *,
        down_after: float,
        tuning: HttpTuning | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.key = key
        self.clock = clock
        self.down_after = down_after
        self.tuning = tuning or HttpTuning()
        self.threshold = self.tuning.breaker_failures
        self._failures = 0
        #: When the first request of the current run of failures was sent.
        self._since: float | None = None
        self._why = ""
        self._paused = False
        self._probing = False
        self._next_probe = 0.0
        self._delay = self.tuning.probe_first
        self._down: HostDown | None = None
        self._changed = asyncio.Event()
        #: Bodies that stalled with none arriving whole since, and when the first began.
        self._stalls = 0
        self._stalled_since: float | None = None

    @property
    def paused(self) -> bool:
        """Whether requests to the host now wait for a probe (or fail: host down)."""
        return self._paused or self._down is not None

    @property
    def down(self) -> HostDown | None:
        return self._down

    async def enter(self) -> bool:
        """Wait until a request may go out; ``True`` when it goes as the probe.

        Raises :class:`HostDown` once the host has been given up on.
        """
        while True:
            if self._down is not None:
                raise HostDown(str(self._down), host=self.key, outage=self._down.outage)
            if not self._paused:
                return False
            now = self.clock.monotonic()
            if not self._probing and now >= self._next_probe:
                self._probing = True
                return True
            wait = None if self._probing else self._next_probe - now
            await self.clock.wait(self._changed, wait)

    def answered(self, probe: bool) -> None:
        """The host answered (any status): it is up."""
        was_paused = self._paused
        self._failures = 0
        self._since = None
        self._paused = self._probing = False
        self._delay = self.tuning.probe_first
        if was_paused:
            logger.info("%s answers again: resuming", self.key)
            self._notify()

    def failed(self, exc: ConnectionFailed, started: float, probe: bool) -> None:
        """A request sent at ``started`` got no answer because of ``exc``."""
        if self._down is not None:
            return
        now = self.clock.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = started
        self._why = _why(exc)
        if probe:
            self._probing = False
            self._delay = min(self.tuning.probe_cap, self._delay * 2)
            self._next_probe = now + self._delay
        elif not self._paused and self._failures >= self.threshold:
            self._paused = True
            self._next_probe = now + self._delay
            logger.warning(
                "%s: %s (%d times in a row): pausing the host, probing it one request at a time",
                self.key,
                self._why,
                self._failures,
            )
        if self._paused and now - self._since >= self.down_after:
            self._give_up(f"{self.key}: {self._why} for {now - self._since:.0f} s")
        self._notify()

    def stalled(self, started: float) -> None:
        """A body the host began to send (request sent at ``started``) stopped arriving.

        The host answers, so there is nothing to probe; but when no body has arrived
        whole for ``down_after`` seconds, every file's retries would only wait out the
        read timeout again: give up on the host as for failed connections.
        """
        if self._down is not None:
            return
        now = self.clock.monotonic()
        self._stalls += 1
        if self._stalled_since is None:
            self._stalled_since = started
        if self._stalls >= self.threshold and now - self._stalled_since >= self.down_after:
            self._give_up(
                f"{self.key}: every answer stalled mid-body for {now - self._stalled_since:.0f} s"
            )
            self._notify()

    def finished(self) -> None:
        """A body arrived whole."""
        self._stalls = 0
        self._stalled_since = None

    def condemn(self, exc: UntrustedCertificate) -> HostDown:
        """The host cannot be trusted: every request to it fails as ``exc`` did.

        Its certificate will not verify on the next request either; one line for all
        of its files, and no more handshakes with it this run.
        """
        if self._down is None:
            self._down = HostDown(str(exc), host=self.key, outage=str(exc))
            self._notify()
        # A new error each time: one exception object raised in several tasks would
        # collect all of their tracebacks.
        return HostDown(str(self._down), host=self.key, outage=self._down.outage, url=exc.url)

    def _give_up(self, outage: str) -> None:
        self._down = HostDown(f"{outage}; not tried again this run", host=self.key, outage=outage)
        logger.warning("%s: giving up on the host for this run", outage)

    def release(self, probe: bool) -> None:
        """A request ended without telling whether the host is up (cancelled, say)."""
        if probe:
            self._probing = False
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _why(exc: ConnectionFailed) -> str:
    return exc.why or "connection failed"
