"""Progress a person can believe: rate and ETA, byte counts, plain lines and JSON events."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from rich.console import Console

import mirror
from mirror import _models as m
from mirror._display import JsonDisplay, PlainDisplay, RichDisplay
from mirror._download import Stats
from mirror._meter import MIN_SPAN, RateMeter, eta
from mirror.emulator import Emulator, Fault, FilesOptions

from .conftest import FAST_RETRY, ena_manifest, one_fastq_catalog, one_stream
from .inproc import mirror_main

MiB = 1 << 20


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(meter: RateMeter, clock: Clock, total: int, rate: float, seconds: float) -> int:
    """Advance ``seconds`` in 0.5 s ticks with bytes arriving at ``rate``; the new total."""
    for _ in range(round(seconds / 0.5)):
        clock.now += 0.5
        total += int(rate * 0.5)
        meter.sample(total)
    return total


# -- the rate meter ----------------------------------------------------------------


def test_rate_is_withheld_until_bytes_have_flowed_for_the_minimum_span() -> None:
    clock = Clock()
    meter = RateMeter(clock)
    assert meter.sample(0) is None
    # Planning for ten seconds: no bytes, no rate, and the wait does not count.
    feed(meter, clock, 0, 0, 10)
    assert meter.rate is None
    # One tiny first read (a TCP window) is the kind of sample that gave "510 bytes/s".
    clock.now += 0.5
    assert meter.sample(510) is None
    total = feed(meter, clock, 510, 20e6, MIN_SPAN - 1.0)
    assert meter.rate is None
    feed(meter, clock, total, 20e6, 1.0)
    rate = meter.rate
    assert rate is not None
    # The mean over the flowing span, not over the planning time before it.
    assert 14e6 < rate < 21e6


def test_rate_is_smoothed_and_decays_through_a_stall_instead_of_jumping() -> None:
    clock = Clock()
    meter = RateMeter(clock)
    meter.sample(0)
    total = feed(meter, clock, 0, 10e6, 10)
    assert meter.rate == pytest.approx(10e6, rel=0.05)
    # One half-second burst at 10x moves the estimate, but nowhere near 10x.
    clock.now += 0.5
    total += int(100e6 * 0.5)
    burst = meter.sample(total)
    assert burst is not None
    assert 10e6 < burst < 20e6
    # A stall: the rate falls steadily, never to zero at once and never negative.
    seen: list[float] = []
    for _ in range(10):
        clock.now += 0.5
        rate = meter.sample(total)
        assert rate is not None
        seen.append(rate)
    assert all(r > 0 for r in seen)
    assert seen == sorted(seen, reverse=True)
    assert seen[-1] < 0.5 * burst


def test_eta_needs_a_rate_and_says_nothing_when_stalled() -> None:
    assert eta(100 * MiB, None) is None
    assert eta(100 * MiB, 0.0) is None
    assert eta(0, 5.0) == 0.0
    assert eta(100 * MiB, 10 * MiB) == pytest.approx(10.0)


# -- rendering ---------------------------------------------------------------------


def progress(**kw: Any) -> m.Progress:
    base: dict[str, Any] = {
        "planned": 120,
        "planning": True,
        "verified": 3,
        "failed": 0,
        "bytes_done": 300 * MiB,
        "bytes_total": 3174 * MiB,
        "rate": None,
    }
    base.update(kw)
    return m.Progress(**base)


def test_plain_lines_come_every_interval_with_files_bytes_rate_and_eta() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(
        Console(file=out, width=200), verbose=False, quiet=False, interval=30, clock=clock
    )
    display.handle(progress())
    clock.now += 29
    display.handle(progress())
    assert out.getvalue() == ""  # nothing before the first interval is up
    clock.now += 1
    display.handle(progress())
    clock.now += 10
    display.handle(progress(rate=20 * MiB, eta=143.0))
    clock.now += 20
    display.handle(
        progress(
            planning=False,
            rate=20 * MiB,
            eta=3725.0,
            waiting=(
                "waiting for ftp.sra.ebi.ac.uk: rate limit (429, Retry-After 4 s), retry in 3 s",
            ),
        )
    )
    lines = out.getvalue().splitlines()
    assert lines == [
        "progress: 3/≥ 120 files, still planning, 300.0 MiB/3.1 GiB+, rate not known yet",
        "progress: 3/120 files, 300.0 MiB/3.1 GiB, 20.0 MiB/s, ETA 1:02:05",
        "  waiting for ftp.sra.ebi.ac.uk: rate limit (429, Retry-After 4 s), retry in 3 s",
    ]


def test_plain_lines_while_planning_say_the_eta_is_a_lower_bound() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(
        Console(file=out, width=200), verbose=False, quiet=False, interval=5, clock=clock
    )
    clock.now += 5
    display.handle(progress(rate=20 * MiB, eta=143.0, unsized=2))
    assert out.getvalue().splitlines() == [
        "progress: 3/≥ 120 files, still planning, 300.0 MiB/3.1 GiB+, 20.0 MiB/s, ETA ≥ 2:23, "
        "2 files of unknown size"
    ]


def test_quiet_plain_display_prints_no_progress_lines() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(
        Console(file=out, width=200), verbose=False, quiet=True, interval=1, clock=clock
    )
    clock.now += 5
    display.handle(progress(rate=1.0, eta=3.0))
    assert out.getvalue() == ""


def render(display: RichDisplay) -> str:
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(display.render())
    return out.getvalue()


def test_terminal_shows_growing_totals_file_bars_and_what_waits() -> None:
    clock = Clock()
    display = RichDisplay(Console(file=io.StringIO()), verbose=False, clock=clock)
    assert render(display).strip() == "planning…"
    a = m.ActiveFile(path="ena/ERR1/ERR1_1.fastq.gz", done=1 * MiB, size=96 * MiB)
    b = m.ActiveFile(
        path="ena/ERR2/ERR2.fastq.gz",
        done=0,
        size=50 * MiB,
        waiting="waiting for www.ebi.ac.uk: rate limit (429, Retry-After 4 s)",
    )
    display.handle(progress(active=(a, b)))
    text = render(display)
    first = text.splitlines()[0]
    assert "3/≥ 120 files, still planning" in first
    assert "300.0 MiB/3.1 GiB+" in first
    assert "measuring rate…" in first
    assert "ETA" not in first
    # Per-file rate, too, only once that file has flowed for a while.
    clock.now += 0.5
    display.handle(progress(active=(a,)))
    for step in range(1, 6):
        clock.now += 0.5
        a = m.ActiveFile(path=a.path, done=(1 + step) * MiB, size=a.size)
        display.handle(
            progress(
                planning=False,
                rate=2 * MiB,
                eta=1437.0,
                active=(a, b),
                waiting=(
                    "waiting for www.ebi.ac.uk: rate limit (429, Retry-After 4 s), retry in 3 s",
                ),
            )
        )
    lines = render(display).splitlines()
    assert "3/120 files" in lines[0]
    assert "still planning" not in lines[0]
    assert "2.0 MiB/s  ETA 23:57" in lines[0]
    assert "ERR1_1.fastq.gz" in lines[1]
    assert "6.0 MiB/96.0 MiB" in lines[1]
    assert re.search(r"[12]\.\d MiB/s", lines[1]), lines[1]
    assert "ERR2.fastq.gz" in lines[2]
    assert "waiting to retry" in lines[2]
    assert lines[3].strip() == (
        "waiting for www.ebi.ac.uk: rate limit (429, Retry-After 4 s), retry in 3 s"
    )


# -- the engine's byte counts ----------------------------------------------------------

PATH = "vol1/fastq/ERR700/001/ERR7000001/ERR7000001.fastq.gz"
SIZE = 6_000_000


async def test_a_fetch_that_restarts_from_zero_does_not_count_its_bytes_twice(
    tmp_path: Path,
) -> None:
    # The first answer is cut after 2 MB; the resume is answered 200 with the whole
    # file (Range ignored), so the download starts again from byte 0.
    faults = [
        Fault(kind="truncate", host="ftp", after_bytes=2_000_000, times=1),
        Fault(kind="no_range", host="ftp"),
    ]
    catalog = one_fastq_catalog(7, PATH, SIZE)
    async with Emulator(catalog, faults=faults, files=FilesOptions(bandwidth=6_000_000)) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR7000001"])
        seen: list[m.Progress] = []
        async with mirror.Mirror(doc, retry=FAST_RETRY, progress_interval=0.02) as run:
            async for event in run.events():
                if isinstance(event, m.Progress):
                    seen.append(event)
        assert run.summary.verified == 1
        await emu.wait_idle()
        tries = [e for e in emu.log if e.host == "ftp"]
    assert [(t.status, t.range is not None) for t in tries] == [(200, False), (200, True)]
    done = [a.done for p in seen for a in p.active]
    assert max(done) <= SIZE, f"{max(done)} bytes shown of a {SIZE}-byte file"
    assert all(p.bytes_done <= p.bytes_total for p in seen)
    # The display did go back: after the cut it showed fewer than the 2 MB kept.
    peak = done.index(max(d for d in done if d <= 2_000_000))
    assert any(d < 1_000_000 for d in done[peak:])
    assert seen[-1].bytes_done == SIZE


async def test_a_sliced_fetch_that_loses_unsaved_slices_does_not_count_them_twice(
    tmp_path: Path,
) -> None:
    # Parallel slices of 2 MiB for files from 1 MiB: the real sizes scaled down. One
    # slice's answer is reset mid-way; the retry goes on from the slices' saved state,
    # which is behind what had arrived, so those bytes come (and are shown) again.
    sliced = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=1 << 20, slice=2 << 20))
    size = 8_000_000
    faults = [Fault(kind="reset", host="ftp", after_bytes=1_500_000, times=1)]
    async with Emulator(
        one_fastq_catalog(7, PATH, size), faults=faults, files=FilesOptions(bandwidth=4_000_000)
    ) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR7000001"])
        seen: list[m.Progress] = []
        async with mirror.Mirror(
            doc, retry=FAST_RETRY, progress_interval=0.02, tuning=sliced
        ) as run:
            async for event in run.events():
                if isinstance(event, m.Progress):
                    seen.append(event)
        assert run.summary.verified == 1
        await emu.wait_idle()
        ranged = [e for e in emu.log if e.host == "ftp" and e.range is not None]
    assert len(ranged) > 4  # four slices, and at least one asked again
    done = [a.done for p in seen for a in p.active]
    assert max(done) <= size, f"{max(done)} bytes shown of a {size}-byte file"
    assert all(p.bytes_done <= p.bytes_total for p in seen)
    assert seen[-1].bytes_done == size


@pytest.mark.slow  # a real 1 s Retry-After counting down on the display's own clock
async def test_a_file_waiting_on_retry_after_says_which_host_and_for_how_long(
    tmp_path: Path,
) -> None:
    faults = [Fault(kind="status", host="ftp", status=503, retry_after=1, times=1)]
    async with Emulator(one_fastq_catalog(7, PATH, 100_000), faults=faults) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR7000001"])
        host = emu.endpoints["ena_files"].removeprefix("http://")
        seen: list[m.Progress] = []
        async with mirror.Mirror(doc, retry=FAST_RETRY, progress_interval=0.05) as run:
            async for event in run.events():
                if isinstance(event, m.Progress):
                    seen.append(event)
        assert run.summary.verified == 1
    waits = [p for p in seen if p.waiting]
    assert waits
    said = rf"waiting for {re.escape(host)}: rate limit \(503, Retry-After 1 s\)"
    assert all(
        re.fullmatch(said + ", retry in [01] s", line) for p in waits for line in p.waiting
    ), waits[0].waiting
    # Counting down, and shown on the file itself too.
    assert waits[0].waiting[0].endswith("retry in 1 s")
    assert any(p.waiting[0].endswith("retry in 0 s") for p in waits), [p.waiting for p in waits]
    assert [a.waiting for a in waits[0].active] == [
        f"waiting for {host}: rate limit (503, Retry-After 1 s)"
    ]
    assert not seen[-1].waiting


def test_planning_that_adds_no_file_for_a_while_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    # Only the module's own clock: the test's event loop and pytest keep the real one.
    monkeypatch.setattr("mirror._download.time", SimpleNamespace(monotonic=clock))
    stats = Stats()
    clock.now += 4
    assert stats.planning_idle() == 4.0
    stats.planned = 3
    assert stats.planning_idle() == 0.0
    clock.now += 12
    assert stats.planning_idle() == 12.0
    stats.planning = False
    assert stats.planning_idle() == 0.0


def test_json_events_go_to_the_stdout_in_place_when_the_display_is_made() -> None:
    # Not the stdout of when the module was imported: a caller's redirection counts.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        JsonDisplay().handle(m.PlanFinished(files=2, bytes=10))
    (line,) = out.getvalue().splitlines()
    assert json.loads(line) | {"time": 0} == {
        "event": "plan-finished",
        "time": 0,
        "files": 2,
        "bytes": 10,
        "unsized": 0,
    }


# -- the command line, as cron or nohup runs it -----------------------------------------

#: 2 MB/s: the 6 MB file takes about three seconds (a rate is given after MIN_SPAN of
#: flow, and progress comes every half second).
SLOW_FILES = FilesOptions(bandwidth=2_000_000)


@pytest.mark.slow  # slow: a 3 s transfer paced at 2 MB/s (a rate is given after 1.5 s of flow)
def test_off_a_terminal_a_progress_line_comes_every_interval(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(one_fastq_catalog(7, PATH, SIZE), files=SLOW_FILES)
    manifest = tmp_path / "m.yaml"
    # One connection: the file keeps the capped pace instead of being split.
    manifest.write_text(
        yaml.safe_dump(
            ena_manifest(
                emu.endpoints, tmp_path / "data", ["ERR7000001"], hosts=one_stream(emu.endpoints)
            )
        )
    )
    done = mirror_main("run", str(manifest), "--progress-interval", "0.5")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    # A tick may come before the Portal has answered (a busy machine): nothing planned.
    while lines and lines[0] == "progress: planning…, 0 B/0 B+, rate not known yet":
        lines.pop(0)
    assert len(lines) >= 2, done.stderr
    pattern = re.compile(
        r"progress: (\d+)/(?:≥ )?1 files(?:, still planning)?, "
        r"([\d.]+) (?:B|KiB|MiB)/5\.7 MiB\+?, "
        r"(rate not known yet|[\d.]+ (?:KiB|MiB)/s, ETA (?:≥ )?\d+:\d\d)$"
    )
    for line in lines:
        assert pattern.match(line), line
    rated = [line for line in lines if "/s, ETA" in line]
    assert rated, lines
    # The rate is the capped one (2 MB/s = 1.9 MiB/s), not an early outlier; the cap
    # paces in bursts, so a smoothed reading may round up to 2.0.
    for line in rated:
        rate = float(re.search(r"([\d.]+) (KiB|MiB)/s", line).group(1))  # type: ignore[union-attr]
        unit = re.search(r"([\d.]+) (KiB|MiB)/s", line).group(2)  # type: ignore[union-attr]
        mib = rate if unit == "MiB" else rate / 1024
        assert 1.4 < mib <= 2.05, line
    assert "1/1 files verified" in done.stderr


def test_an_unusable_progress_interval_is_one_line_exit_2(tmp_path: Path) -> None:
    done = mirror_main("run", str(tmp_path / "m.yaml"), "--progress-interval", "soon")
    assert done.returncode == 2
    assert "--progress-interval: 'soon' is not a number of seconds" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # slow: a 3 s transfer paced at 2 MB/s (a rate is given after 1.5 s of flow)
def test_json_progress_events_carry_the_bytes_of_active_files_as_they_grow(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(one_fastq_catalog(7, PATH, SIZE), files=SLOW_FILES)
    manifest = tmp_path / "m.yaml"
    # One connection: the file keeps the capped pace instead of being split.
    manifest.write_text(
        yaml.safe_dump(
            ena_manifest(
                emu.endpoints, tmp_path / "data", ["ERR7000001"], hosts=one_stream(emu.endpoints)
            )
        )
    )
    done = mirror_main("run", str(manifest), "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    shown = [
        a["done"]
        for e in events
        if e["event"] == "progress"
        for a in e["active"]
        if a["path"] == "ena/ERR7000001/ERR7000001.fastq.gz"
    ]
    # Events come every half second over a three-second transfer; each one shows
    # more bytes than the last (not a step per 4 MiB written).
    assert len(shown) >= 4, shown
    assert all(b > a for a, b in itertools.pairwise(shown)), shown
    # The last may show the whole file: received, not yet verified and landed.
    assert all(0 < d < SIZE for d in shown[:-1]), shown
    assert 0 < shown[-1] <= SIZE, shown
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["bytes_done"] == last["bytes_total"] == SIZE
    assert last["rate"] is not None
    assert last["eta"] == 0.0


def test_json_events_go_to_the_stdout_of_when_the_display_is_made() -> None:
    # A program that redirected its stdout after importing mirror (as capturing
    # output in-process does) gets the events there, not on the stdout of the import.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        display = JsonDisplay()
        display.handle(m.FileVerified(path="a", bytes=1, md5="0" * 32, verified_by="md5"))
    assert json.loads(out.getvalue())["path"] == "a"
