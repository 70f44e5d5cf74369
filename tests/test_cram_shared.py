"""CRAM references fetched by a process that did not plan them."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from mirror._config import CramRefsSpec, HostLimit
from mirror._http import Http
from mirror._metadata import MetadataWriter
from mirror.emulator import Catalog, Emulator
from mirror.sources import SourceContext
from mirror.sources.cram import CramRefSource, cache_path

from .conftest import FAST_RETRY
from .shared_pull import SharedPull, as_row, fetch_claimed


async def test_sha1_fetched_by_another_process_is_filed_in_the_cache_it_was_written_to(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_cram(count=2, length=10_000, seed=3)
    refs = catalog.cram_references
    cache = tmp_path / "hts-ref"
    pull = SharedPull()
    async with (
        Emulator(catalog, seed=7) as emu,
        Http(lambda host: HostLimit(), retry=FAST_RETRY) as http,
    ):

        def source(cache: Path) -> CramRefSource:
            ctx = SourceContext(
                http=http,
                endpoints=emu.endpoints,
                metadata=MetadataWriter(tmp_path / "metadata"),
                warn=lambda line: None,
                pull=pull,
            )
            return CramRefSource(CramRefsSpec(sha1=tuple(r.sha1 for r in refs), cache=cache), ctx)

        planner = source(cache)
        # The same manifest on another machine, where the cache path resolves elsewhere:
        # the claimed task names the cache the file is written to.
        worker = source(tmp_path / "elsewhere")
        tasks = [t async for batch in planner.expand() for t in batch]
        pull.plan(tasks)
        for row in (as_row(t) for t in tasks):
            assert await fetch_claimed(pull, worker.hooks, row, tmp_path / "dest", http)
    for ref in refs:
        filed = cache / cache_path(ref.md5)
        data = filed.read_bytes()
        assert hashlib.md5(data).hexdigest() == ref.md5
        assert stat.S_IMODE(filed.stat().st_mode) == 0o444
        assert (cache / ".sha1" / f"{ref.sha1}.md5").read_text() == ref.md5 + "\n"
    assert not (tmp_path / "elsewhere").exists()
