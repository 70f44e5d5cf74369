"""Backoff delays, Retry-After parsing, and the one loop every retry goes through."""

from __future__ import annotations

import os
import random
from email.utils import formatdate
from pathlib import Path

import pytest

from mirror._config import EnaSpec, HostLimit
from mirror._dest import LocalDestination
from mirror._download import Downloader, Stats
from mirror._http import Http
from mirror._metadata import MetadataWriter
from mirror._models import Event, FileFailed, FileTask, FileVerified
from mirror._retry import RetryPolicy, next_delay, parse_retry_after
from mirror._state import Member, open_store
from mirror.emulator import Catalog, Emulator, Fault
from mirror.sources import SourceContext
from mirror.sources.ena import EnaSource

from .clock import VirtualClock


def test_delays_grow_and_stay_capped() -> None:
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0)
    rng = random.Random(1)
    delays = [next_delay(policy, n, rng=rng) for n in range(1, 10)]
    assert all(d is not None for d in delays)
    ceilings = [min(8.0, 2 ** (n - 1)) for n in range(1, 10)]
    for d, ceiling in zip(delays, ceilings, strict=True):
        assert d is not None
        assert 0 <= d <= ceiling


def test_full_jitter_uses_the_whole_range_down_to_zero() -> None:
    # Full jitter: uniform(0, min(cap, base * 2**n)). Equal jitter would keep every
    # delay in the upper half, and workers that failed together stay bunched there.
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0)
    rng = random.Random(3)
    delays = [next_delay(policy, 4, rng=rng) for _ in range(400)]
    assert all(d is not None and 0 <= d <= 8.0 for d in delays)
    lower = [d for d in delays if d is not None and d < 4.0]
    assert 120 < len(lower) < 280
    assert min(d for d in delays if d is not None) < 0.5


def test_full_jitter_keeps_retry_after_as_a_floor() -> None:
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0)
    rng = random.Random(5)
    for _ in range(100):
        d = next_delay(policy, 5, rng=rng, retry_after=3.0)
        assert d is not None
        assert 3.0 <= d <= 8.0


def test_gives_up_after_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=3)
    assert next_delay(policy, 2) is not None
    assert next_delay(policy, 3) is None


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0)
    assert next_delay(policy, 1, retry_after=7.0) == 7.0


def test_retry_after_is_clipped() -> None:
    policy = RetryPolicy(max_wait=60.0)
    assert next_delay(policy, 1, retry_after=86400.0) == 60.0


def test_jitter_spreads_workers() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0)
    rng = random.Random(7)
    assert len({next_delay(policy, 4, rng=rng) for _ in range(20)}) > 15


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    got = parse_retry_after(formatdate(now + 30, usegmt=True), now=now)
    assert got is not None
    assert 29.0 <= got <= 31.0


def test_policy_validates() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def _draws(seed: int, *ceilings: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, c) for c in ceilings]


@pytest.mark.parametrize(
    ("policy", "retry_after", "expected"),
    [
        # Ceilings 0.5, 1, 2, 4, 8 ... up to the cap; None after the last attempt.
        pytest.param(RetryPolicy(attempts=5), None, [*_draws(3, 0.5, 1, 2, 4), None], id="default"),
        pytest.param(
            RetryPolicy(attempts=7, base=1, cap=5),
            None,
            [*_draws(3, 1, 2, 4, 5, 5, 5), None],
            id="capped",
        ),
        pytest.param(RetryPolicy(attempts=1), None, [None], id="one-attempt"),
        # Retry-After: a floor where the draw is lower, clipped to max_wait.
        pytest.param(
            RetryPolicy(attempts=4, base=1, cap=8),
            1.5,
            [max(1.5, d) for d in _draws(3, 1, 2, 4)] + [None],
            id="retry-after-floor",
        ),
        pytest.param(
            RetryPolicy(attempts=3, max_wait=20), 3600.0, [20.0, 20.0, None], id="retry-after-clip"
        ),
        pytest.param(RetryPolicy(attempts=2, base=0), None, [0.0, None], id="no-wait"),
    ],
)
def test_delay_sequence_with_a_fixed_rng(
    policy: RetryPolicy, retry_after: float | None, expected: list[float | None]
) -> None:
    rng = random.Random(3)
    got = [
        next_delay(policy, attempt, retry_after=retry_after, rng=rng)
        for attempt in range(1, len(expected) + 1)
    ]
    assert got == pytest.approx(expected)


# --- one loop for API calls, file downloads and the ENA report reader ----------------------


def _limited(host: str, match: str) -> Fault:
    """The host's next matching request answers 429 with ``Retry-After: 5``."""
    return Fault(kind="status", host=host, match=match, status=429, retry_after=5, times=1)


#: Backoff of a few milliseconds: any wait of seconds is the server's Retry-After.
QUICK = RetryPolicy(attempts=4, base=0.001, cap=0.001)


def _http(clock: VirtualClock) -> Http:
    return Http(lambda host: HostLimit(connections=4), retry=QUICK, clock=clock)


async def _planned(emu: Emulator, http: Http, tmp_path: Path) -> list[FileTask]:
    ctx = SourceContext(
        http=http, endpoints=emu.endpoints, metadata=MetadataWriter(tmp_path), warn=print
    )
    source = EnaSource(EnaSpec(accessions=("ERR164407",), files=("fastq",)), ctx)
    return [task async for batch in source.expand() for task in batch]


async def test_retry_after_is_honoured_alike_by_api_calls_files_and_the_ena_reader(
    tmp_path: Path,
) -> None:
    faults = [
        _limited("www", "*/returnFields"),
        _limited("www", "*/filereport"),
        _limited("www", "*/search"),
        _limited("ftp", "*"),
    ]
    async with Emulator(Catalog.demo(), faults=faults, seed=7) as emu:
        # An API call (Http.get_json -> Http.retrying).
        api = VirtualClock()
        async with _http(api) as http:
            fields = await http.get_json(
                f"{emu.endpoints['ena_portal']}/returnFields",
                params={"result": "read_run", "format": "json"},
            )
        assert isinstance(fields, list)
        assert api.slept == [5.0]

        # The ENA report reader, streaming rows (returnFields answers at once now).
        reader = VirtualClock()
        async with _http(reader) as http:
            tasks = await _planned(emu, http, tmp_path / "meta")
        assert tasks
        assert reader.slept == [5.0]

        # A file download (Downloader._attempts).
        files = VirtualClock()
        store = await open_store(None, tmp_path / "files")
        try:
            generation = await store.join(Member(id="t", host="h", pid=os.getpid()), lease=60)
            task = tasks[0]
            await store.plan([task], generation)
            events: list[Event] = []
            async with _http(files) as http:
                downloader = Downloader(
                    dest=LocalDestination(tmp_path / "files"),
                    http=http,
                    store=store,
                    retry=QUICK,
                    stats=Stats(),
                    emit=events.append,
                )
                await downloader.download(task)
        finally:
            await store.aclose()
        assert files.slept == [5.0]
        retried = [e for e in events if isinstance(e, FileFailed)]
        assert [e.final for e in retried] == [False]
        assert "HTTP 429" in retried[0].reason
        assert [e.path for e in events if isinstance(e, FileVerified)] == [task.path]
    statuses = [(e.host, e.status) for e in emu.log]
    assert statuses.count(("www", 429)) == 2
    assert statuses.count(("ftp", 429)) == 1
