"""EGA's public metadata API (metadata.ega-archive.org) for the Live Outbox: a dataset's file
records, with the plaintext checksums the outbox itself does not carry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .._context import CONTEXT
from ._outbox import OutboxDataset, OutboxFile

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = [
    "METADATA_PREFIX",
    "OUTBOX",
    "OutboxControls",
    "OutboxOptions",
    "OutboxState",
    "build_metadata_app",
]

#: Where the metadata API is mounted on the ``ega`` host (the real one is a host's root).
METADATA_PREFIX = "/ega-metadata"
# Where EGA keeps every file (the records observed carry both).
_LOCATIONS = ("crg", "ebi")


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxOptions:
    """The metadata API of the Live Outbox.

    Attributes:
        display_names: give each file record a ``display_name`` (the outbox file name
            without ``.c4gh``). Whether EGA's records carry it is not known; False
            leaves it out, so a client must match records to outbox files by size.
        wrong_checksum: file accessions (EGAF…) whose ``unencrypted_checksum`` is wrong.
    """

    display_names: bool = True
    wrong_checksum: Iterable[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "wrong_checksum", frozenset(self.wrong_checksum))


class OutboxState:
    """What tests may change while the emulator runs (``emu.outbox``)."""

    def __init__(self, options: OutboxOptions) -> None:
        self.display_names = options.display_names
        self.wrong_checksum: set[str] = set(options.wrong_checksum)


OUTBOX = web.AppKey("outbox", OutboxState)


def file_record(item: OutboxFile, *, display_name: bool, wrong: bool) -> dict[str, Any]:
    """One file as ``GET /datasets/{EGAD}/files`` lists it.

    ``filesize`` is the size of the ``.c4gh`` file for one recipient key (what a client
    downloads), as third-party clients read it. ``display_name`` is our assumption (see
    ``OutboxOptions.display_names``). The checksum can take a while for a big file the
    first time: call this off the event loop.
    """
    checksum = item.checksum
    if wrong:
        # Still a well-formed digest of the right kind, just not this file's.
        checksum = checksum[::-1]
    record: dict[str, Any] = {
        "accession_id": item.accession,
        "filesize": item.c4gh_size,
        "extension": item.extension,
        "unencrypted_checksum": checksum,
        "unencrypted_checksum_type": item.checksum_type,
        "locations": list(_LOCATIONS),
        "has_report": False,
    }
    if display_name:
        record["display_name"] = item.name
    return record


def dataset_records(
    dataset: OutboxDataset, *, display_names: bool, wrong_checksum: Iterable[str] = ()
) -> list[dict[str, Any]]:
    wrong = frozenset(wrong_checksum)
    return [
        file_record(item, display_name=display_names, wrong=item.accession in wrong)
        for item in dataset.files
    ]


async def _files(request: web.Request) -> web.Response:
    context = request.config_dict[CONTEXT]
    state = request.config_dict[OUTBOX]
    accession = request.match_info["dataset"].strip().upper()
    dataset = context.catalog.outbox_dataset(accession)
    if dataset is None:
        return web.json_response(
            {"detail": f"Dataset {request.match_info['dataset']} not found"}, status=404
        )
    # ``limit`` pages on EGA's side; one page holds every file here, so it is ignored.
    records = await asyncio.to_thread(
        dataset_records,
        dataset,
        display_names=state.display_names,
        wrong_checksum=frozenset(state.wrong_checksum),
    )
    return web.json_response(records)


def build_metadata_app() -> web.Application:
    """``GET /datasets/{EGAD}/files``: a JSON list of the dataset's file records; an unknown
    dataset is a 404 with a JSON ``detail``."""
    app = web.Application()
    app.router.add_get("/datasets/{dataset}/files", _files)
    return app


class OutboxControls:
    """``emu.outbox``: the outbox catalog and the metadata API's switches, for tests."""

    def __init__(self, catalog: Catalog, state: OutboxState) -> None:
        self._catalog = catalog
        self._state = state

    def file(self, accession: str) -> OutboxFile:
        """The outbox file ``EGAF…``."""
        found = self._catalog.outbox_file(accession)
        if found is None:
            raise KeyError(accession)
        return found

    def set_display_names(self, on: bool) -> None:
        """Give file records a ``display_name`` (True) or leave it out (False)."""
        self._state.display_names = on

    def set_wrong_checksum(self, accession: str, wrong: bool = True) -> None:
        """Make the metadata API publish a wrong checksum for ``accession`` (or the right
        one again)."""
        self.file(accession)
        if wrong:
            self._state.wrong_checksum.add(accession)
        else:
            self._state.wrong_checksum.discard(accession)
