"""A :class:`mirror.Tuning` given to the library call reaches the downloader, the
sources and the pull; the arguments of the same names still win over it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pytest

import mirror
from mirror._engine import Engine
from mirror._manifest import load_manifest
from mirror.emulator import Catalog, EgaOptions, Emulator
from mirror.sources import ega_data

from .conftest import FAST_RETRY, ena_manifest, file_requests, one_fastq_catalog
from .test_ega import DATASET, PASSWORD, USER, ega_manifest, md5_file

PATH = "vol1/fastq/ERR700/001/ERR7000001/ERR7000001.fastq.gz"
LOCAL = "ena/ERR7000001/ERR7000001.fastq.gz"
SIZE = 300_000
SLICE = 64 << 10
RUNS = ["ERR164407", "ERR4080001", "ERR4080002", "ERR4080003", "ERR11000001"]


async def test_a_small_slice_fetches_a_file_in_range_slices(tmp_path: Path) -> None:
    sliced = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=SIZE, slice=SLICE))
    async with Emulator(one_fastq_catalog(7, PATH, SIZE), seed=7) as emu:
        plain = await mirror.run(
            ena_manifest(emu.endpoints, tmp_path / "plain", ["ERR7000001"]), retry=FAST_RETRY
        )
        await emu.wait_idle()
        whole = [e.range for e in file_requests(emu.log)]
        before = len(emu.log)
        summary = await mirror.run(
            ena_manifest(emu.endpoints, tmp_path / "sliced", ["ERR7000001"]),
            retry=FAST_RETRY,
            tuning=sliced,
        )
        await emu.wait_idle()
        ranges = sorted(e.range or "" for e in file_requests(emu.log[before:]))
        body = emu.ena.file_bytes(PATH)

    # The defaults: a 300 kB file is one plain GET.
    assert (plain.verified, whole) == (1, [None])
    # Tuned: one Range request per 64 KiB slice, the last one short.
    assert summary.verified == 1
    assert ranges == sorted(
        f"bytes={start}-{min(start + SLICE, SIZE) - 1}" for start in range(0, SIZE, SLICE)
    )
    assert (tmp_path / "sliced" / LOCAL).read_bytes() == body


async def test_a_slice_over_what_the_archive_serves_is_cut_to_its_maximum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EGA's Data API serves at most 100 MiB a request: scaled down to 100 kB here.
    monkeypatch.setattr(ega_data, "MAX_RANGE", 100_000)
    wide = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=1, slice=1 << 20))
    catalog = Catalog.generate_ega(dataset=DATASET, files=1, size=SIZE)
    (f,) = catalog.ega_datasets[0].files
    async with Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})) as emu:
        summary = await mirror.run(
            ega_manifest(emu.endpoints, tmp_path, protocol="data-api"),
            credentials={"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD},
            retry=FAST_RETRY,
            tuning=wide,
        )
        await emu.wait_idle()
        ranges = sorted(e.range or "" for e in emu.log if e.path.startswith("/v2/files/"))
        md5 = emu.ega.plain_md5(f.file_id)
    assert (summary.verified, summary.failed) == (1, 0)
    assert ranges == sorted(
        f"bytes={start}-{min(start + 100_000, SIZE) - 1}" for start in range(0, SIZE, 100_000)
    )
    name = Path(f.file_name).name.removesuffix(".cip")
    assert md5_file(tmp_path / f"ega/{DATASET}/{f.file_id}/{name}") == md5


async def test_the_ena_search_batch_follows_the_tuning(tmp_path: Path) -> None:
    small = mirror.Tuning(sources=mirror.SourceTuning(ena_accessions=2))
    async with Emulator(Catalog.demo(), seed=7) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", RUNS)
        files, _ = await Engine(load_manifest(doc), retry=FAST_RETRY, tuning=small).plan_only()
        await emu.wait_idle()
        asked = [
            parse_qs(e.form or "")["includeAccessions"][0].split(",")
            for e in emu.log
            if e.path.endswith("/search")
        ]
    assert files > 0
    assert sorted(len(batch) for batch in asked) == [1, 2, 2]
    assert sorted(acc for batch in asked for acc in batch) == sorted(RUNS)


def test_the_arguments_of_the_same_name_win_over_the_tuning(tmp_path: Path) -> None:
    doc = ena_manifest({}, tmp_path / "data", ["ERR7000001"])
    slow = mirror.Timeouts(connect=1.0, read=2.0, host_down=3.0)
    fast = mirror.Timeouts(connect=4.0, read=5.0, host_down=6.0)
    tuning = mirror.Tuning(
        pull=mirror.PullTuning(lease=30.0, progress_interval=0.1, queue=3),
        retry=mirror.RetryPolicy(attempts=2),
        timeouts=slow,
    )

    engine = mirror.Mirror(doc, tuning=tuning).engine()
    assert (engine.lease, engine.retry.attempts, engine.manifest.timeouts) == (30.0, 2, slow)
    assert engine.tuning.pull.queue_size(16) == 3

    engine = mirror.Mirror(doc, tuning=tuning, lease=5.0, retry=FAST_RETRY, timeouts=fast).engine()
    assert (engine.lease, engine.retry, engine.manifest.timeouts) == (5.0, FAST_RETRY, fast)
    assert engine.tuning.pull.progress_interval == 0.1  # not named: the tuning's

    # Without a tuning, today's defaults.
    engine = mirror.Mirror(doc).engine()
    assert engine.tuning == mirror.Tuning()
    assert engine.tuning.pull.queue_size(16) == 4


def test_nonsense_values_are_refused_when_the_tuning_is_built() -> None:
    with pytest.raises(ValueError, match="lease must be positive"):
        mirror.PullTuning(lease=0)
    with pytest.raises(ValueError, match="at least 1"):
        mirror.TransferTuning(slice=0)
    with pytest.raises(ValueError, match="at least 1"):
        mirror.SourceTuning(enterobase_page=0)
    with pytest.raises(ValueError, match="probe_first"):
        mirror.HttpTuning(probe_first=30.0, probe_cap=15.0)
