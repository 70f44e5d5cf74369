"""EnteroBase assemblies fetched by a process that did not plan them.

A claimed task is rebuilt from the store's row and carries no request headers: the
token must come from the fetching process's own source object, through its hooks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mirror._config import EnterobaseSpec, HostLimit
from mirror._credentials import Secret
from mirror._exceptions import HTTPStatusError
from mirror._fetch import fetch
from mirror._http import Http
from mirror._metadata import MetadataWriter
from mirror._models import TaskStatus
from mirror._paths import final_path
from mirror.emulator import Catalog, Emulator, EnterobaseOptions
from mirror.sources import SourceContext
from mirror.sources.enterobase import EnterobaseSource

from .conftest import FAST_RETRY
from .shared_pull import SharedPull, as_row, fetch_claimed

TOKEN = "eb-SECRET-token-7f3a9c"
SPEC = EnterobaseSpec(database="senterica", assemblies=True)


def source(http: Http, emu: Emulator, root: Path, pull: SharedPull) -> EnterobaseSource:
    ctx = SourceContext(
        http=http,
        endpoints=emu.endpoints,
        metadata=MetadataWriter(root / "metadata"),
        warn=lambda line: None,
        pull=pull,
    )
    return EnterobaseSource(SPEC, ctx, Secret(TOKEN))


async def test_claimed_assembly_gets_the_token_from_the_hooks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    catalog = Catalog.generate_enterobase(records=3, seed=6)
    dest = tmp_path / "data"
    pull = SharedPull()
    async with (
        Emulator(catalog, enterobase=EnterobaseOptions(tokens=(TOKEN,), rate_limit=None)) as emu,
        Http(lambda host: HostLimit(), retry=FAST_RETRY) as http_a,
        Http(lambda host: HostLimit(), retry=FAST_RETRY) as http_b,
    ):
        planner = source(http_a, emu, tmp_path / "a", pull)
        worker = source(http_b, emu, tmp_path / "b", pull)
        tasks = [t async for batch in planner.expand() for t in batch]
        pull.plan(tasks)
        rows = [as_row(t) for t in tasks]
        assert len(rows) == 3
        assert all(t.headers == () for t in tasks)  # the token is not in the plan

        # A row fetched with no hooks is refused: the emulator wants the token.
        with pytest.raises(HTTPStatusError) as refused:
            await fetch(rows[0], final_path(dest, rows[0].path), http_b, pull)
        assert refused.value.status == 401

        for row in rows:
            got = await fetch_claimed(pull, worker.hooks, row, dest, http_b)
            assert got is not None
            assert got.verified_by == "size"
        await emu.wait_idle()
        served = {r.accession: emu.enterobase.fasta("senterica", r.accession) for r in rows}
        downloads = [e.status for e in emu.log if e.path.endswith("/upload/download")]
    assert set(pull.status.values()) == {TaskStatus.VERIFIED}
    for row in rows:
        assert (dest / row.path).read_bytes() == served[row.accession]
    assert downloads == [401, 200, 200, 200]
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(rows) + repr(tasks) + str(refused.value)
