"""``python -m mirror.emulator``: run the emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from ._catalog import Catalog
from ._faults import Fault
from ._options import HOSTS, FilesOptions, TlsOptions
from ._server import Emulator
from .ega._metadata import OutboxOptions
from .ega._options import DEFAULT_EGA_USERS, EgaOptions
from .ena._options import EnaOptions
from .enterobase._options import EnterobaseOptions
from .webin._options import WebinOptions
from .webin._records import DEFAULT_WEBIN_ACCOUNTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mirror.emulator",
        description="Serve emulated archives on loopback: ENA (Portal API, file host, CRAM "
        "reference registry, Webin REST V2), MGnify v1, EnteroBase v2.0 and EGA (REST v2 + "
        "Data API).",
    )
    parser.add_argument("--catalog", default="demo", help="'demo' (default) or a catalog JSON")
    parser.add_argument("--faults", type=Path, help="JSON list of faults (or {'faults': [...]})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--log", type=Path, help="append one JSON line per request here")
    parser.add_argument("--www-port", type=int, default=0, help="Portal API port (0: any free)")
    parser.add_argument("--ftp-port", type=int, default=0, help="file host port (0: any free)")
    parser.add_argument(
        "--enterobase-port", type=int, default=0, help="EnteroBase host port (0: any free)"
    )
    parser.add_argument(
        "--enterobase-token",
        action="append",
        dest="enterobase_tokens",
        metavar="TOKEN",
        help="an EnteroBase API token to accept (repeatable; default: test-token)",
    )
    parser.add_argument(
        "--enterobase-rate-limit",
        type=int,
        default=3,
        help="EnteroBase requests/s per client before 503 (EnteroBase: 3; 0 disables)",
    )
    parser.add_argument("--ega-port", type=int, default=0, help="EGA host port (0: any free)")
    parser.add_argument(
        "--ega-user",
        action="append",
        dest="ega_users",
        type=_user,
        metavar="USER:PASSWORD",
        help="an EGA account (repeatable; default: testuser@ebi.ac.uk:testpassword)",
    )
    parser.add_argument(
        "--ega-session-idle",
        type=float,
        default=600.0,
        help="seconds an unused EGA REST v2 session lives (EGA: 600)",
    )
    parser.add_argument(
        "--ega-token-ttl",
        type=float,
        default=3600.0,
        help="lifetime in seconds of an EGA Data API bearer token (default 3600)",
    )
    parser.add_argument(
        "--ega-no-range", action="store_true", help="EGA REST v2 streams ignore Range: 200"
    )
    parser.add_argument(
        "--outbox-no-display-names",
        action="store_true",
        help="EGA's metadata API gives Live Outbox file records no display_name",
    )
    parser.add_argument(
        "--outbox-wrong-checksum",
        action="append",
        default=[],
        metavar="EGAF",
        help="EGA's metadata API publishes a wrong checksum for this file (repeatable)",
    )
    parser.add_argument(
        "--webin-account",
        action="append",
        dest="webin_accounts",
        type=_user,
        metavar="NAME:PASSWORD",
        help="a Webin submission account (repeatable; default: Webin-12345:webin-password)",
    )
    parser.add_argument(
        "--webin-poll-pending",
        type=_non_negative,
        default=2,
        help="polls of a queued Webin submission answered 202 before its receipt (default 2)",
    )
    parser.add_argument(
        "--today", type=date.fromisoformat, help="the emulator's date (YYYY-MM-DD) for reldate"
    )
    parser.add_argument("--ready-file", type=Path, help="write endpoints + pid here once listening")
    parser.add_argument(
        "--portal-rate-limit",
        type=int,
        default=50,
        help="portal requests/s per client before 429 (ENA: 50; 0 disables)",
    )
    parser.add_argument("--portal-retry-after", type=int, help="add Retry-After to portal 429s")
    parser.add_argument("--bandwidth", type=int, help="cap every file response at bytes/s")
    parser.add_argument("--no-range", action="store_true", help="ignore Range: always 200")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-host",
        action="append",
        dest="tls_hosts",
        choices=HOSTS,
        help="a host to serve over HTTPS (repeatable; default: all, given --tls-cert)",
    )
    parser.add_argument(
        "--local-links",
        action="store_true",
        help="absolute links (ENA *_ftp values, Browser XML, MGnify, EnteroBase) name the "
        "emulator's own hosts",
    )
    return parser


def _user(spec: str) -> tuple[str, str]:
    user, colon, password = spec.partition(":")
    if not colon or not user:
        raise argparse.ArgumentTypeError(f"expected USER:PASSWORD, got {spec!r}")
    return user, password


def _non_negative(spec: str) -> int:
    try:
        value = int(spec)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {spec!r}")
    return value


def _load_catalog(spec: str) -> Catalog:
    if spec == "demo":
        return Catalog.demo()
    return Catalog.from_dict(json.loads(Path(spec).read_text(encoding="utf-8")))


def _load_faults(path: Path | None) -> list[Fault]:
    if path is None:
        return []
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    items = data["faults"] if isinstance(data, dict) else data
    return [Fault.from_dict(item) for item in items]


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for the file: they must never see it half-written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def _emulator(args: argparse.Namespace, catalog: Catalog, faults: list[Fault]) -> Emulator:
    """The emulator the command line's options describe (not started)."""
    ega_users = dict(args.ega_users) if args.ega_users else DEFAULT_EGA_USERS
    webin_accounts = dict(args.webin_accounts) if args.webin_accounts else DEFAULT_WEBIN_ACCOUNTS
    tls = None
    if args.tls_cert is not None and args.tls_key is not None:
        tls = TlsOptions(cert=args.tls_cert, key=args.tls_key, hosts=args.tls_hosts)
    return Emulator(
        catalog,
        ena=EnaOptions(
            portal_rate_limit=args.portal_rate_limit or None,
            portal_retry_after=args.portal_retry_after,
        ),
        enterobase=EnterobaseOptions(
            tokens=args.enterobase_tokens or ("test-token",),
            rate_limit=args.enterobase_rate_limit or None,
        ),
        ega=EgaOptions(
            users=ega_users,
            session_idle=args.ega_session_idle,
            token_ttl=args.ega_token_ttl,
            range_support=not args.ega_no_range,
        ),
        webin=WebinOptions(accounts=webin_accounts, poll_pending=args.webin_poll_pending),
        outbox=OutboxOptions(
            display_names=not args.outbox_no_display_names,
            wrong_checksum=args.outbox_wrong_checksum,
        ),
        files=FilesOptions(bandwidth=args.bandwidth, range_support=not args.no_range),
        faults=faults,
        seed=args.seed,
        log_path=args.log,
        ports={
            "www": args.www_port,
            "ftp": args.ftp_port,
            "enterobase": args.enterobase_port,
            "ega": args.ega_port,
        },
        tls=tls,
        local_links=args.local_links,
        today=args.today,
    )


async def _serve(args: argparse.Namespace, catalog: Catalog, faults: list[Fault]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emulator = _emulator(args, catalog, faults)
    async with emulator:
        ready = json.dumps({"endpoints": emulator.endpoints, "pid": os.getpid()})
        if args.ready_file is not None:
            _write_atomically(args.ready_file, ready)
        print(ready, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("mirror.emulator: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        catalog = _load_catalog(args.catalog)
        faults = _load_faults(args.faults)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"mirror.emulator: cannot load input: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not on Windows
        asyncio.run(_serve(args, catalog, faults))
    else:
        uvloop.run(_serve(args, catalog, faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
