"""Whether a stream is worth splitting: its rate, and whether the socket or the CPU
holds it back."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

__all__ = ["SOCKET_SHARE", "Pace", "StreamSlow", "thread_busy"]


class StreamSlow(Exception):
    """A stream ran below its share and stopped: the ``.part`` holds its first ``held``
    bytes, in order, and ``md5`` is their digest so far."""

    def __init__(self, held: int, md5: hashlib._Hash) -> None:
        super().__init__(f"stream slow after {held} bytes")
        self.held = held
        self.md5 = md5


class Pace:
    """Watches one stream's rate: :meth:`slow` says when the rest of its file is worth
    splitting over more connections.

    The rate is measured over windows of at least ``probe`` seconds, from the first
    batch written (the request's own latency is not the stream's pace). A stream
    below ``below`` bytes a second, with more left than one more window would bring,
    is slow; one window is enough, so a throttled file gains its connections early.
    A stream is never split while ``idle()`` says the host has no connection to
    spare: the other files' streams already fill its cap, and slices would only
    queue behind them.

    Nor is a stream split that this machine holds back: more connections only help
    when the event loop spent most of the window waiting for the socket. ``busy()``
    is the loop thread's time on a CPU or waiting for one (a loaded machine), and
    :meth:`waited` adds the time the stream waited for its own writes and hashes;
    a window in which these leave less than ``SOCKET_SHARE`` of it to the socket
    is the CPU's pace, not the link's.
    """

    def __init__(
        self,
        *,
        below: int,
        probe: float,
        size: int,
        idle: Callable[[], int] = lambda: 1,
        busy: Callable[[], float] | None = None,
    ) -> None:
        self.below = below
        self.probe = probe
        self.size = size
        self.idle = idle
        self.busy = busy or thread_busy
        self.tripped = False
        self._since: float | None = None
        self._at = 0
        self._busy_at = 0.0
        self._waited = 0.0

    def waited(self, seconds: float) -> None:
        """The stream waited ``seconds`` for its own writes and hashes."""
        self._waited += seconds

    def slow(self, position: int, now: float) -> bool:
        if self._since is None:
            self._since, self._at = now, position
            self._busy_at, self._waited = self.busy(), 0.0
            return False
        elapsed = now - self._since
        if elapsed < self.probe:
            return False
        rate = (position - self._at) / elapsed
        busy = self.busy()
        socket = elapsed - (busy - self._busy_at) - self._waited
        self._since, self._at = now, position
        self._busy_at, self._waited = busy, 0.0
        self.tripped = (
            rate < self.below
            and self.size - position > rate * self.probe
            and socket >= SOCKET_SHARE * elapsed
            and self.idle() > 0
        )
        return self.tripped


#: The least share of a window a slow stream's loop spends waiting for the socket
#: before the stream is split: below it, the CPU is the limit, and more connections
#: would only share the same cores.
SOCKET_SHARE = 0.5


def thread_busy() -> float:
    """Seconds the calling thread has run on a CPU or waited in a run queue for one.

    Linux reports both in ``/proc/thread-self/schedstat``; elsewhere only the time
    on a CPU is known.
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            on_cpu, queued, _ = f.read().split()
        return (int(on_cpu) + int(queued)) / 1e9
    except (OSError, ValueError):
        return time.thread_time()
