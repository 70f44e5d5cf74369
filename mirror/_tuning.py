"""Every knob of a run in one frozen object: ``mirror.run(..., tuning=Tuning(...))``.

The defaults are the values the mirror is tested and benchmarked with; each field
says what moving it trades. Facts about the archives or protocols (EGA's 100 MiB
request maximum, HTTP's redirect limit, SQLite's variable limit) are not knobs and
stay constants beside the code that obeys them.

Only what a user needs from the manifest is there too: ``timeouts:`` (and the
command line's ``--timeout`` and ``--lease``). The rest is for library callers,
benchmarks and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._retry import RetryPolicy

if TYPE_CHECKING:
    # Only named: the manifest's modules import the sources' seam, which imports this.
    from ._config import Timeouts

__all__ = ["HttpTuning", "PullTuning", "SourceTuning", "TransferTuning", "Tuning"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TransferTuning:
    """How one file's bytes travel from the socket to its ``.part``."""

    #: Files at least this large go over several connections in Range slices. Lower:
    #: more files gain parallel connections, at the cost of a ``.slices`` record and
    #: more requests per file.
    segment_min: int = 512 << 20
    #: Bytes per Range request of a segmented file. Smaller slices spread a file over
    #: connections more evenly and lose less on a failed request, but cost more
    #: requests (and a host's rate limit counts each). At most 100 MiB for EGA's
    #: Data API, which serves no more in one request.
    slice: int = 64 << 20
    #: Connections per segmented file (bounded again by the host's ``connections``).
    #: More: faster on a long fat pipe; fewer: more of the host's connections left
    #: for other files.
    segment_connections: int = 4
    #: A stream slower than this many bytes a second (a server that caps each
    #: connection, as the archives' do) is joined by more connections: the rest of its
    #: file is split into Range slices, up to ``split_connections`` and the host's
    #: ``connections``. Lower: only very slow streams split; higher: more streams
    #: split. A stream the CPU (not the server) holds back never splits: the event
    #: loop must have waited for the socket most of the measured time.
    split_below: int = 64 << 20
    #: Seconds of a stream's body measured before it may be split (and between later
    #: looks). Shorter: a throttled file gains its connections sooner; longer: a
    #: burst or a stall is less likely to be mistaken for the stream's pace.
    split_probe: float = 0.3
    #: Bytes per Range request once a file is split: the frontier's hash waits for
    #: at most one slice per connection at the end. Smaller: less of that wait, more
    #: requests.
    split_slice: int = 16 << 20
    #: The most connections one split file uses (the host's ``connections`` bounds
    #: all of its files together). More: faster from a throttled server; fewer: more
    #: of the host's connections left for other files.
    split_connections: int = 8
    #: Bytes gathered before one write-and-hash hop to a thread. Larger: fewer thread
    #: hops (less overhead per byte); smaller: less memory per file in flight and
    #: less lost when the process is killed.
    flush_bytes: int = 4 << 20
    #: Seconds after which gathered bytes are written even if ``flush_bytes`` is not
    #: reached: the most a killed process loses of a slow file. Shorter: more writes.
    flush_seconds: float = 0.5
    #: Bytes of a segmented file between saves of its ``.slices`` record (also saved
    #: every ``flush_seconds``). Smaller: a resume refetches less; larger: fewer writes.
    save_every: int = 32 << 20
    #: A file whose digest is wrong this many times in a row fails for good: the
    #: archive's checksum, not the transfer, is then the likely fault.
    checksum_attempts: int = 3

    def __post_init__(self) -> None:
        if min(self.segment_min, self.slice, self.segment_connections) < 1:
            raise ValueError("segment_min, slice and segment_connections must be at least 1")
        if min(self.flush_bytes, self.save_every, self.checksum_attempts) < 1:
            raise ValueError("flush_bytes, save_every and checksum_attempts must be at least 1")
        if self.flush_seconds <= 0:
            raise ValueError("flush_seconds must be positive")
        if min(self.split_below, self.split_slice, self.split_connections) < 1:
            raise ValueError("split_below, split_slice and split_connections must be at least 1")
        if self.split_probe <= 0:
            raise ValueError("split_probe must be positive")


@dataclass(frozen=True, kw_only=True, slots=True)
class PullTuning:
    """How a process takes part in a pull: leases, the queue, progress."""

    #: Seconds a claimed file stays its holder's without a heartbeat (``--lease``).
    #: Shorter: a dead process's files are taken over sooner; longer: a process
    #: stalled (a paused VM, a slow store) is less likely to lose its files. The
    #: heartbeat runs every quarter lease (at most every 2 s) and an idle member
    #: looks for work every eighth (at most every second).
    lease: float = 60.0
    #: Claimed files waiting for a worker; ``None``: a quarter of the workers (at
    #: least 2). Larger: workers never wait for the store; smaller: fewer files held
    #: back from other members at the end of a pull of large files.
    queue: int | None = None
    #: Seconds between progress events. Shorter: a livelier display, more events.
    progress_interval: float = 0.5
    #: Planning that adds no file for this many seconds is shown as waiting.
    planning_quiet: float = 5.0
    #: Seconds between reads of the whole pull's counts (for the progress display)
    #: while several members take part. Shorter: fresher counts; longer: less load
    #: on the store (hundreds of ms a read at 300,000 files on PostgreSQL).
    counts_every: float = 5.0

    def __post_init__(self) -> None:
        if self.lease <= 0:
            raise ValueError("lease must be positive")
        if self.queue is not None and self.queue < 1:
            raise ValueError("queue must be at least 1")
        if self.progress_interval <= 0 or self.counts_every <= 0:
            raise ValueError("progress_interval and counts_every must be positive")
        if self.planning_quiet < 0:
            raise ValueError("planning_quiet must not be negative")

    def queue_size(self, workers: int) -> int:
        return self.queue if self.queue is not None else max(2, workers // 4)


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpTuning:
    """How a host that stops answering is handled (the host limits are the manifest's).

    The one-second window the rate limits are kept in, and its margin, are not
    knobs: they are what keeps the mirror within an archive's published limit.
    """

    #: Connection failures in a row before a host is paused and probed one request
    #: at a time. Lower: a dead host costs fewer wasted attempts; higher: a flaky
    #: network pauses a host less often.
    breaker_failures: int = 3
    #: Seconds between the first probes of a paused host, doubled after each failed
    #: probe up to ``probe_cap``. Shorter: a host that comes back is used sooner;
    #: longer: fewer requests to a host that is down.
    probe_first: float = 1.0
    probe_cap: float = 15.0
    #: Answers of JSON cut short before a GET gives up on them.
    bad_json_attempts: int = 3

    def __post_init__(self) -> None:
        if self.breaker_failures < 1 or self.bad_json_attempts < 1:
            raise ValueError("breaker_failures and bad_json_attempts must be at least 1")
        if not 0 < self.probe_first <= self.probe_cap:
            raise ValueError("probe_first must be positive and at most probe_cap")


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceTuning:
    """How many items the sources ask the archives for at once."""

    #: Accessions per ENA Portal ``/search`` request. More: fewer requests; fewer:
    #: smaller answers, and files start downloading sooner.
    ena_accessions: int = 1000
    #: Accessions OR'd into one ENA ``query=`` (secondary accessions): a few KB of
    #: form body at 100. More makes one long query the Portal is slower to answer.
    ena_query_accessions: int = 100
    #: Files handed to the store per batch while reading an ENA report. Larger:
    #: fewer store transactions; smaller: downloads start sooner, less memory.
    ena_batch: int = 500
    #: MGnify analyses expanded at once (each lists its downloads); the host gate
    #: still bounds the requests.
    mgnify_analyses: int = 4
    #: Items per MGnify page (``page_size=``). Larger: fewer requests; smaller:
    #: quicker answers from a slow listing.
    mgnify_page: int = 100
    #: JSON:API pages fetched at once when the page count is known. MGnify's own
    #: client caps itself at 5 concurrent requests.
    pages_ahead: int = 4
    #: Records per EnteroBase page (``limit=``). EnteroBase allows 1 request a
    #: second, so larger pages list faster; smaller pages lose less to a failure.
    enterobase_page: int = 100

    def __post_init__(self) -> None:
        if (
            min(
                self.ena_accessions,
                self.ena_query_accessions,
                self.ena_batch,
                self.mgnify_analyses,
                self.mgnify_page,
                self.pages_ahead,
                self.enterobase_page,
            )
            < 1
        ):
            raise ValueError("source batch and page sizes must be at least 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class Tuning:
    """Every knob of a run, with the defaults the mirror is tested with.

    >>> tuning = mirror.Tuning(transfer=mirror.TransferTuning(slice=16 << 20))
    >>> await mirror.run("manifest.yaml", tuning=tuning)
    """

    transfer: TransferTuning = field(default_factory=TransferTuning)
    pull: PullTuning = field(default_factory=PullTuning)
    http: HttpTuning = field(default_factory=HttpTuning)
    sources: SourceTuning = field(default_factory=SourceTuning)
    #: Backoff between attempts of a request or a file. More attempts or a higher
    #: cap ride out longer outages; fewer fail sooner.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Connect, read and host-down timeouts; ``None``: the manifest's ``timeouts:``.
    timeouts: Timeouts | None = None
