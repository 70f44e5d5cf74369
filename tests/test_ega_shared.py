"""EGA when the process that fetches a file is not the one that planned it.

Two source objects stand for two processes of one pull: they share the pull's ledger
(:class:`tests.shared_pull.SharedPull`) and one emulator, and each fetches the files
it claims from tasks rebuilt as a store row holds them. The last test runs two real
``mirror run`` processes on one ``dest`` against one emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from mirror._config import HostLimit
from mirror._credentials import Secret
from mirror._http import Http
from mirror._metadata import MetadataWriter
from mirror._models import FileTask, TaskStatus
from mirror.emulator import Catalog, EgaOptions, Emulator
from mirror.emulator._log import LogEntry
from mirror.emulator.ega._records import stream_md5
from mirror.sources import SourceContext
from mirror.sources.ega import EgaLogin, EgaTicketSource
from mirror.sources.ega_data import EgaDataSource

from .conftest import FAST_RETRY, read_index
from .shared_pull import SharedPull, as_row, fetch_claimed
from .test_ega import CREDS, DATASET, PASSWORD, REKEY, USER, ega_manifest
from .threaded import serving

#: The same ``dest``, so the same request label, in every process.
MIRROR_ID = "5eed0f1e2a3b"
LABEL = f"ebi-mirror-{DATASET}-{MIRROR_ID}"
LOGIN = EgaLogin(username=USER, password=Secret(PASSWORD), rekey=Secret(REKEY))


S = TypeVar("S", EgaTicketSource, EgaDataSource)


async def processes(
    stack: AsyncExitStack, emu: Emulator, tmp_path: Path, pull: SharedPull, kind: type[S]
) -> list[S]:
    """Two source objects of one manifest entry, each with its own HTTP client."""
    made: list[S] = []
    for name in ("a", "b"):
        http = await stack.enter_async_context(Http(lambda host: HostLimit(), retry=FAST_RETRY))
        ctx = SourceContext(
            http=http,
            endpoints=emu.endpoints,
            metadata=MetadataWriter(tmp_path / name / "metadata"),
            warn=lambda line: None,
            mirror_id=MIRROR_ID,
            pull=pull,
        )
        made.append(kind((DATASET,), (), ctx, LOGIN))
    return made


async def planned(source: EgaTicketSource | EgaDataSource, pull: SharedPull) -> list[FileTask]:
    """What ``source`` plans, put in the pull, handed back as claims rebuild it."""
    tasks = [t async for batch in source.expand() for t in batch]
    pull.plan(tasks)
    return [as_row(t) for t in tasks]


def access(log: list[LogEntry], what: str) -> list[str]:
    """Paths of the access API's ``what`` calls (``requests/new``, ``requests/delete``)."""
    return [e.path.split("/access/v2/", 1)[1] for e in log if f"/access/v2/{what}" in e.path]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_two_processes_request_the_dataset_once_and_delete_its_label_after_the_last_file(
    tmp_path: Path, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    catalog = Catalog.generate_ega(dataset=DATASET, files=4, size=60_000, size_spread=0.5)
    dest = tmp_path / "data"
    pull = SharedPull()
    emu = await stack.enter_async_context(Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})))
    planner, worker = await processes(stack, emu, tmp_path, pull, EgaTicketSource)
    rows = await planned(planner, pull)
    assert [r.headers for r in rows] == [()] * 4

    deletes = []
    # The worker never planned: it asks first, so it requests the whole dataset.
    await fetch_claimed(pull, worker.hooks, rows[0], dest, worker.ctx.http)
    deletes.append(len(access(emu.log, "requests/delete")))
    # The planner lists the label and finds its ticket there.
    await fetch_claimed(pull, planner.hooks, rows[1], dest, planner.ctx.http)
    deletes.append(len(access(emu.log, "requests/delete")))
    # A ticket removed (the 7-day expiry): only that file is requested again.
    (gone,) = [t for t in emu.ega.tickets(label=LABEL) if t.file.file_id == rows[2].accession]
    assert emu.ega.expire_ticket(gone.ticket)
    await fetch_claimed(pull, worker.hooks, rows[2], dest, worker.ctx.http)
    deletes.append(len(access(emu.log, "requests/delete")))
    assert [t.file.file_id for t in emu.ega.tickets(label=LABEL)] == [rows[3].accession]
    await fetch_claimed(pull, planner.hooks, rows[3], dest, planner.ctx.http)
    await emu.wait_idle()
    deletes.append(len(access(emu.log, "requests/delete")))

    assert access(emu.log, "requests/new") == [
        f"requests/new/datasets/{DATASET}",
        f"requests/new/files/{rows[2].accession}",
    ]
    # Deleted once, by the process that settled the dataset's last file.
    assert deletes == [0, 0, 0, 1]
    assert access(emu.log, "requests/delete") == [f"requests/delete/{LABEL}"]
    assert emu.ega.tickets(user=USER) == []
    assert set(pull.status.values()) == {TaskStatus.VERIFIED}
    for row in rows:
        assert md5(dest / row.path) == emu.ega.stream_md5(row.accession, REKEY)
    assert emu.ega.stats().tickets_issued == 5  # 4, then the expired one again
    for secret in (PASSWORD, REKEY, *emu.ega.session_tokens()):
        assert secret not in caplog.text


async def test_both_processes_at_once_one_dataset_request_one_label_delete(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=8, size=40_000, size_spread=0.5)
    dest = tmp_path / "data"
    pull = SharedPull()
    emu = await stack.enter_async_context(Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})))
    planner, worker = await processes(stack, emu, tmp_path, pull, EgaTicketSource)
    rows = await planned(planner, pull)

    async def work(source: EgaTicketSource, mine: list[FileTask]) -> None:
        for row in mine:
            assert await fetch_claimed(pull, source.hooks, row, dest, source.ctx.http)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(work(planner, rows[0::2]))
        tg.create_task(work(worker, rows[1::2]))
    await emu.wait_idle()

    new = access(emu.log, "requests/new")
    assert new.count(f"requests/new/datasets/{DATASET}") == 1
    assert access(emu.log, "requests/delete") == [f"requests/delete/{LABEL}"]
    assert pull.taken.count(f"ega-delete {LABEL}") == 1
    for row in rows:
        assert md5(dest / row.path) == emu.ega.stream_md5(row.accession, REKEY)


async def test_a_failed_file_in_another_process_keeps_the_label(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=3, size=30_000)
    bad = catalog.ega_datasets[0].files[0].file_id
    dest = tmp_path / "data"
    pull = SharedPull()
    emu = await stack.enter_async_context(
        Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD}, wrong_results=(bad,)))
    )
    planner, worker = await processes(stack, emu, tmp_path, pull, EgaTicketSource)
    rows = await planned(planner, pull)
    assert rows[0].accession == bad

    # The worker's file fails (/results disagrees, every time); the planner's verify.
    assert await fetch_claimed(pull, worker.hooks, rows[0], dest, worker.ctx.http) is None
    for row in rows[1:]:
        assert await fetch_claimed(pull, planner.hooks, row, dest, planner.ctx.http)
    await emu.wait_idle()

    assert pull.status[rows[0].key] is TaskStatus.FAILED
    assert access(emu.log, "requests/delete") == []
    # Each new attempt at the bad file asked for a ticket of that file alone.
    new = access(emu.log, "requests/new")
    assert new == [f"requests/new/datasets/{DATASET}"] + [f"requests/new/files/{bad}"] * 2
    assert not (dest / rows[0].path).exists()


async def test_data_api_worker_fetches_claimed_files_with_its_own_token(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=3, size=50_000)
    dest = tmp_path / "data"
    pull = SharedPull()
    emu = await stack.enter_async_context(Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD})))
    planner, worker = await processes(stack, emu, tmp_path, pull, EgaDataSource)
    rows = await planned(planner, pull)
    assert all(r.verify == "md5" and r.checksum for r in rows)

    # The worker never listed anything: its first download fetches its token.
    assert await fetch_claimed(pull, worker.hooks, rows[0], dest, worker.ctx.http)
    # Tokens revoked: the next claimed file meets a 401, renews, and completes.
    emu.ega.expire_tokens()
    assert await fetch_claimed(pull, worker.hooks, rows[1], dest, worker.ctx.http)
    assert await fetch_claimed(pull, planner.hooks, rows[2], dest, planner.ctx.http)
    await emu.wait_idle()

    tokens = [e.status for e in emu.log if e.path.endswith("/token")]
    assert tokens == [200, 200, 200, 200]  # planner, worker, worker renewed, planner renewed
    data = [e.status for e in emu.log if e.path.startswith("/v2/files/")]
    assert data == [200, 401, 200, 401, 200]
    for row in rows:
        assert md5(dest / row.path) == emu.ega.plain_md5(row.accession)


@pytest.mark.slow  # two mirror commands in child processes at once, as two users would
def test_two_runs_at_once_request_the_dataset_once_and_delete_its_label_once(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_ega(dataset=DATASET, files=40, size=200_000, size_spread=0.5)
    files = catalog.ega_datasets[0].files
    with serving(Emulator(catalog, ega=EgaOptions(users={USER: PASSWORD}))) as served:
        emu = served.value
        dest = tmp_path / "data"
        manifest = tmp_path / "m.yaml"
        manifest.write_text(yaml.safe_dump(ega_manifest(emu.endpoints, dest)))
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "mirror", "run", str(manifest), "-q"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **CREDS},
            )
            for _ in range(2)
        ]
        errors = [run.communicate(timeout=120)[1].decode() for run in runs]
        served.wait(emu.wait_idle)
        log = emu.log
    assert [run.returncode for run in runs] == [0, 0], errors
    rows = read_index(dest)
    assert sorted(r["accession"] for r in rows) == sorted(f.file_id for f in files)
    assert {r["status"] for r in rows} == {"verified"}
    new = [e.path for e in log if "/requests/new/" in e.path]
    assert new == [f"/ega/rest/access/v2/requests/new/datasets/{DATASET}"]
    deletes = [e.path for e in log if "/requests/delete/" in e.path]
    assert len(deletes) == 1
    served_bytes = sum(e.bytes for e in log if "/downloads/" in e.path)
    assert served_bytes <= 1.15 * sum(f.size for f in files)
    for f in files:
        local = dest / f"ega/{DATASET}/{f.file_id}/{Path(f.file_name).name}"
        assert md5(local) == stream_md5(f, REKEY)
