"""A run ends when its last file does: nothing waits out a poll after the work is done."""

from __future__ import annotations

import time
from pathlib import Path

import mirror
from mirror.emulator import Emulator

from .conftest import ena_manifest, one_fastq_catalog


async def test_the_run_ends_as_soon_as_its_last_file_is_verified(tmp_path: Path) -> None:
    # The dispatcher looks at the pull every second (at the default lease) while files
    # are held; the end of this process's own last file must wake it at once.
    catalog = one_fastq_catalog(8, "vol1/fastq/ERR800/001/ERR8000001/ERR8000001.fastq.gz", 1000)
    async with Emulator(catalog) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR8000001"])
        verified_at: float | None = None
        async with mirror.Mirror(doc) as run:
            async for event in run.events():
                if isinstance(event, mirror.FileVerified):
                    verified_at = time.monotonic()
        ended = time.monotonic()
    assert run.summary.verified == 1
    assert verified_at is not None
    assert ended - verified_at < 0.5
