"""The EGA outbox: ebi-mirror's fetch of one Crypt4GH file (SFTP, decryption and SHA-256
or MD5 verification included) next to OpenSSH's ``sftp`` ``get`` of the same file from
the same server, one run each.

Against the test suite's outbox (OpenSSH's sshd and the emulator's metadata API, started
here; needs root and openssh-server, as the tests do)::

    python -m benchmarks.outbox --serve 1073741824

or against any outbox::

    python -m benchmarks.outbox --outbox sftp://127.0.0.1:PORT --metadata URL \\
        --dataset EGAD… --file EGAF… --remote EGAD…/NAME.c4gh \\
        --user USER --key KEY_WITHOUT_PASSPHRASE --known-hosts FILE \\
        --c4gh-secret FILE --c4gh-passphrase TEXT [--work DIR]

``sftp`` runs in batch mode (``-b``), which cannot be given a key passphrase: the key
must be a plain one. The mirror's time runs from its file's start to its verified
event (planning and start-up are not counted); ``sftp``'s is the whole command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import mirror
from mirror.emulator import Catalog, Emulator
from mirror.emulator.ega._metadata import OutboxOptions
from mirror.emulator.ega._sftp import OUTBOX_USER, SftpOutbox, make_keys


async def _mirror(
    args: argparse.Namespace, dest: Path, catalog: Catalog | None = None
) -> tuple[float, int]:
    if catalog is not None:
        # The metadata API, on this loop: idle once the file is planned.
        async with Emulator(catalog, outbox=OutboxOptions(), seed=7) as emu:
            args.metadata = emu.endpoints["ega_metadata"]
            return await _mirror(args, dest)
    manifest = {
        "dest": str(dest),
        "endpoints": {"ega_outbox": args.outbox, "ega_metadata": args.metadata},
        "sources": [
            {"ega": {"datasets": [args.dataset], "files": [args.file], "protocol": "outbox"}}
        ],
    }
    credentials = {
        "EGA_USERNAME": args.user,
        "EGA_SSH_KEY": args.key,
        "EGA_KNOWN_HOSTS": args.known_hosts,
        "C4GH_SECRET_KEY": args.c4gh_secret,
        "C4GH_PASSPHRASE": args.c4gh_passphrase,
    }
    began = 0.0
    async with mirror.Mirror(manifest, credentials=credentials) as run:
        async for event in run.events():
            if isinstance(event, mirror.FileStarted) and not began:
                began = time.perf_counter()
            elif isinstance(event, mirror.FileVerified):
                return time.perf_counter() - began, event.bytes
            elif isinstance(event, mirror.FileFailed) and event.final:
                raise SystemExit(f"mirror: {event.path}: {event.reason}")
    raise SystemExit("mirror: the file was not fetched")


def _sftp(args: argparse.Namespace, into: Path) -> tuple[float, int]:
    url = urlsplit(args.outbox)
    command = [
        "sftp",
        "-q",
        "-b",
        "-",
        "-i",
        args.key,
        "-o",
        f"UserKnownHostsFile={args.known_hosts}",
        "-o",
        "BatchMode=yes",
        "-P",
        str(url.port or 22),
        f"{args.user}@{url.hostname}",
    ]
    began = time.perf_counter()
    subprocess.run(command, input=f"get {args.remote} {into}\n", text=True, check=True)
    return time.perf_counter() - began, into.stat().st_size


def _served(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Catalog:
    """Start the test suite's outbox over one file of ``args.serve`` bytes; fill ``args``."""
    catalog = Catalog.generate_outbox("EGAD50000000001", files=1, sizes=(args.serve,))
    keys = make_keys(work / "keys")
    server = stack.enter_context(SftpOutbox(catalog, keys, cache=work))
    item = catalog.outbox_datasets[0].files[0]
    args.outbox = f"sftp://127.0.0.1:{server.port}"
    args.dataset, args.file = item.dataset, item.accession
    args.remote = f"{item.dataset}/{item.name}.c4gh"
    args.user, args.key = OUTBOX_USER, str(keys.ssh_key_plain)
    args.known_hosts = str(server.known_hosts())
    args.c4gh_secret, args.c4gh_passphrase = str(keys.c4gh_secret), keys.c4gh_passphrase
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, default=0, metavar="BYTES")
    for name in ("outbox", "metadata", "dataset", "file", "remote", "user", "key"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--known-hosts")
    parser.add_argument("--c4gh-secret")
    parser.add_argument("--c4gh-passphrase")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="outbox-bench-", dir=args.work))
    try:
        with contextlib.ExitStack() as stack:
            catalog = _served(args, work, stack) if args.serve else None
            missing = [k for k, v in vars(args).items() if v is None and k != "work"]
            if missing and catalog is None:
                parser.error(f"without --serve, give --{' --'.join(missing)}")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            s_time, s_size = _sftp(args, work / "sftp.c4gh")
            s_cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(before)
            before = resource.getrusage(resource.RUSAGE_SELF)
            m_time, m_size = asyncio.run(_mirror(args, work / "mirror", catalog))
            # Start-up, planning and the metadata API's checksum count here too.
            m_cpu = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(before)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, size, seconds, what in (
        ("sftp get", s_size, s_time, "encrypted"),
        ("ebi-mirror", m_size, m_time, "plaintext"),
    ):
        rate = size / seconds / 1e6
        print(f"{name:11} {size / 1e6:9.1f} MB ({what}) in {seconds:6.2f} s: {rate:7.1f} MB/s")
    # The same encrypted bytes crossed the wire for both.
    print(f"ratio (mirror / sftp): {s_time / m_time:.2f}")
    print(f"CPU seconds (user + system): sftp {s_cpu:.1f}, ebi-mirror's whole run {m_cpu:.1f}")


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
