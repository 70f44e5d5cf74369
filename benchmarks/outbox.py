"""The EGA outbox: ebi-mirror's fetch of one Crypt4GH file (SFTP, decryption and SHA-256
or MD5 verification included) next to OpenSSH's ``sftp`` ``get`` of the same file from
the same server, one run each::

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
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import mirror


async def _mirror(args: argparse.Namespace, dest: Path) -> tuple[float, int]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("outbox", "metadata", "dataset", "file", "remote", "user", "key"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--c4gh-secret", required=True)
    parser.add_argument("--c4gh-passphrase", required=True)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="outbox-bench-", dir=args.work))
    try:
        s_time, s_size = _sftp(args, work / "sftp.c4gh")
        m_time, m_size = asyncio.run(_mirror(args, work / "mirror"))
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


if __name__ == "__main__":
    main()
