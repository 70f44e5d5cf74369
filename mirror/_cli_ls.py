"""``mirror ls ARCHIVE`` (``ega`` today): the datasets an account may download, and
their files.

The listing comes from the sources' own clients (the Data API's token and metadata
calls, the outbox's SFTP listing matched to the metadata API), so it shows what a run
with the same credentials and endpoints would see. Exit 0 when every dataset asked
for was listed, 1 when the archive refused one or failed, 2 for usage or credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ._cli_output import EXIT_FAILED, EXIT_OK, _json
from ._exceptions import ManifestError

if TYPE_CHECKING:
    from ._listing import ListedDataset, Lister, Listing

__all__ = ["_ls"]


async def _ls(args: argparse.Namespace, err: Console) -> int:
    listing = _listing(args.archive)
    protocol = args.protocol or listing.protocols[0]
    if protocol not in listing.protocols:
        raise ManifestError(
            f"--protocol: {args.archive} lists through {', '.join(listing.protocols)}, "
            f"not {protocol!r}",
            file="<command line>",
        )
    wanted = [d.strip().upper() for d in args.datasets]
    bad = [d for d in wanted if not listing.is_dataset(d)]
    if bad:
        raise ManifestError(f"{bad[0]!r} is not {listing.dataset}", file="<command line>")
    async with _lister(args, protocol, listing, err) as lister:
        if wanted:
            datasets = [await lister.listing(d) for d in dict.fromkeys(wanted)]
        else:
            datasets = await lister.granted()
    if args.json:
        doc = {
            "archive": args.archive,
            "protocol": protocol,
            "datasets": [d.to_dict() for d in datasets],
        }
        print(_json(doc))
    else:
        _table(datasets, listed=bool(wanted))
    for d in datasets:
        if d.error:
            err.print(f"mirror: error: {d.error}", markup=False)
    if not wanted and not datasets and not args.json:
        err.print("no datasets: this account may download none", markup=False)
    return EXIT_FAILED if any(d.error for d in datasets) else EXIT_OK


def _listing(archive: str) -> Listing:
    """The source kind named ``archive`` that can list (the registry's, by its key)."""
    from ._registry import kinds

    can = {k.key: listing for k in kinds() if (listing := k.listing) is not None}
    if archive not in can:
        raise ManifestError(
            f"mirror ls: {archive!r} cannot be listed; one of: {', '.join(sorted(can))}",
            file="<command line>",
        )
    return can[archive]


@contextlib.asynccontextmanager
async def _lister(
    args: argparse.Namespace, protocol: str, listing: Listing, err: Console
) -> AsyncIterator[Lister]:
    """The source's lister, built as a run builds its source: credentials, endpoints,
    HTTP."""
    from ._cli_run import _endpoints
    from ._config import HostLimit
    from ._credentials import Credentials
    from ._http import Http
    from ._metadata import MetadataWriter
    from ._registry import CredentialLookup, default_endpoints
    from ._seam import SourceContext

    endpoints = {**default_endpoints(), **_endpoints(args.endpoint)}
    lookup = CredentialLookup(
        credentials=Credentials.from_environment(),
        endpoints=endpoints,
        where=f"mirror ls {args.archive}",
    )

    def warn(message: str) -> None:
        err.print(f"mirror: warning: {message}", markup=False)

    # A listing writes no metadata: the writer a source must hold points at a directory
    # that goes when the listing ends.
    with tempfile.TemporaryDirectory(prefix="mirror-ls-") as scratch:
        async with Http(lambda host: HostLimit(rate=10, connections=4)) as http:
            ctx = SourceContext(
                http=http, endpoints=endpoints, metadata=MetadataWriter(Path(scratch)), warn=warn
            )
            async with listing.open(protocol, lookup, ctx) as lister:
                yield lister


def _table(datasets: Sequence[ListedDataset], *, listed: bool) -> None:
    """Datasets alone; or each dataset's files under it, in aligned columns."""
    from ._display import human_bytes

    if not listed:
        for d in datasets:
            print(d.id)
        return
    for n, d in enumerate(datasets):
        if n:
            print()
        if d.files is None:
            print(f"{d.id}  (not listed: {d.error or 'no files'})")
            continue
        total = sum(f.size or 0 for f in d.files)
        count = len(d.files)
        print(f"{d.id}  {count} file{'' if count == 1 else 's'}, {human_bytes(total)}")
        if not d.files:
            continue
        rows = [("FILE", "NAME", "SIZE", "STATUS", "CHECKSUM")] + [
            (
                f.id,
                f.name,
                "-" if f.size is None else human_bytes(f.size),
                f.status or "-",
                f.checksum_type or "-",
            )
            for f in d.files
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [
                cell.rjust(width) if i == 2 else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            print("  " + "  ".join(cells).rstrip())
